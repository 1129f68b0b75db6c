"""Shared pieces of the attacks: model-mode handling, norms, projections and losses."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from fractions import Fraction

from torch import Tensor, nn

from robustlit.attacks.l1 import l1_projection, l1_steepest_ascent
from robustlit.attacks.losses import dlr_loss
from robustlit.losses import soft_cross_entropy

NORMS = ("Linf", "L2", "L1")

L1_SPARSITY = 0.01
"""Fraction of coordinates a plain L1 steepest-ascent step moves (the 99th percentile of SLIDE, Tramèr & Boneh 2019)."""


def parse_eps(value: float | int | str) -> float:
    """Read a radius from a number or a fraction string such as ``"8/255"``.

    Example:
        >>> round(parse_eps("8/255"), 6), parse_eps(0.5)
        (0.031373, 0.5)
    """
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"cannot read {value!r} as a radius; write a number or a fraction like 8/255") from None
    return float(value)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's previous mode on exit.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.BatchNorm1d(2))
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training
        True
    """
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in previous:
            module.training = was_training


def check_norm(norm: str) -> str:
    """Return ``norm`` if supported, else raise a ``ValueError`` listing the choices."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not supported; choose one of {', '.join(NORMS)}")
    return norm


def per_sample_norm(delta: Tensor, norm: str) -> Tensor:
    """Norm of each sample of ``delta``, shaped to broadcast against it.

    Example:
        >>> import torch
        >>> per_sample_norm(torch.tensor([[3.0, -4.0]]), "L2").flatten().tolist()
        [5.0]
    """
    flat = delta.flatten(1)
    if norm == "Linf":
        values = flat.abs().amax(dim=1)
    elif norm == "L1":
        values = flat.abs().sum(dim=1)
    else:
        values = flat.norm(p=2, dim=1)
    return values.view(-1, *([1] * (delta.ndim - 1)))


def project(delta: Tensor, eps: float, norm: str, x: Tensor | None = None) -> Tensor:
    """Project ``delta`` onto the ε-ball of ``norm`` (per sample).

    For L1, passing the clean inputs ``x`` gives the exact projection onto the ball intersected
    with the box ``0 ≤ x + δ ≤ 1`` (see :func:`~robustlit.attacks.l1.l1_projection`); L∞ and L2
    ignore ``x``, since clipping to the box after their projection stays inside their ball.

    Example:
        >>> import torch
        >>> project(torch.tensor([[3.0, 4.0]]), 1.0, "L2")
        tensor([[0.6000, 0.8000]])
        >>> project(torch.tensor([[3.0, 4.0]]), 1.0, "L1")
        tensor([[0., 1.]])
    """
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    if norm == "L1":
        return l1_projection(delta, eps, x)
    scale = (eps / per_sample_norm(delta, norm).clamp_min(1e-12)).clamp(max=1.0)
    return delta * scale


def steepest_ascent(grad: Tensor, norm: str, point: Tensor | None = None) -> Tensor:
    """Unit-norm steepest-ascent direction of ``grad`` for ``norm`` (sign for L∞).

    For L1 it is the sparse step of :func:`~robustlit.attacks.l1.l1_steepest_ascent` moving
    :data:`L1_SPARSITY` of the coordinates; given the current inputs ``point``, coordinates pinned
    at 0 or 1 by the box are left out. L∞ and L2 ignore ``point``.
    """
    if norm == "Linf":
        return grad.sign()
    if norm == "L1":
        return l1_steepest_ascent(grad, L1_SPARSITY, point)
    return grad / per_sample_norm(grad, norm).clamp_min(1e-12)


def margin_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Carlini–Wagner margin ``max_{i≠y} z_i − z_y`` per sample (positive once misclassified)."""
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - true_logit


def ce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample cross-entropy for hard or soft targets."""
    return soft_cross_entropy(logits, targets, reduction="none")


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}


def resolve_loss(loss: str | Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Look up a per-sample loss by name, or pass a callable through."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not supported; choose one of {', '.join(LOSSES)} or pass a callable")
    return LOSSES[loss]
