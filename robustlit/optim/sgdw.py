"""SGDW: stochastic gradient descent with momentum and decoupled weight decay."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class SGDW(Optimizer):
    """SGD with momentum whose weight decay is decoupled from the gradient step.

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019. Per step, with
    learning rate ``lr`` (as scheduled) and gradient ``g``:

    ``θ ← θ − lr·wd·θ``; ``b ← μ·b + (1 − dampening)·g`` (``b = g`` on the first step);
    ``θ ← θ − lr·(g + μ·b if nesterov else b)``.

    Unlike ``torch.optim.SGD(weight_decay=…)``, the decay never enters the momentum buffer, so its
    strength does not depend on the momentum and an adaptive schedule leaves it unchanged. The
    decay is scaled by the scheduled ``lr``, as ``torch.optim.AdamW`` does.

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate.
        momentum: Momentum factor μ.
        dampening: Dampening of the gradient added to the buffer.
        weight_decay: Decoupled decay rate ``wd`` (per unit of ``lr``).
        nesterov: Use Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGDW([w], lr=0.1, momentum=0.9, weight_decay=0.5)
        >>> w.grad = torch.tensor([0.0])
        >>> opt.step()
        >>> round(float(w), 4)  # 1 - 0.1 * 0.5 * 1
        0.95
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.1, momentum: float = 0.9, dampening: float = 0.0,
                 weight_decay: float = 5e-4, nesterov: bool = False) -> None:
        if lr < 0:
            raise ValueError(f"SGDW needs lr >= 0, got {lr}")
        if momentum < 0:
            raise ValueError(f"SGDW needs momentum >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SGDW needs weight_decay >= 0, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGDW nesterov=true needs momentum > 0 and dampening = 0")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """Perform one update; ``closure`` re-evaluates the loss when given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                grad = parameter.grad
                if decay != 0:
                    parameter.mul_(1.0 - lr * decay)
                if momentum != 0:
                    state = self.state[parameter]
                    if "momentum_buffer" not in state:
                        buffer = state["momentum_buffer"] = grad.detach().clone()
                    else:
                        buffer = state["momentum_buffer"]
                        buffer.mul_(momentum).add_(grad, alpha=1.0 - group["dampening"])
                    grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                parameter.add_(grad, alpha=-lr)
        return loss
