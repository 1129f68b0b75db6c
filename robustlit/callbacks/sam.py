"""SAM and ASAM: minimize the loss at the worst nearby weights, re-running the step through the strategy."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from robustlit.module import RobustModule, unpack_batch
from robustlit.optim import sam_perturbation

_REFUSED_PRECISION = ("16-mixed",)


class SAM(L.Callback):
    """Sharpness-aware minimization (optimizer level; works on RobustModule and on plain LightningModules).

    Reference: Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021.
    After the usual backward pass, and before the optimizer steps, the callback moves the weights to
    ``w + e(w)`` (:func:`~robustlit.optim.sam_perturbation`), re-runs the forward and backward pass of
    the same batch through ``trainer.strategy`` (so autocast, DDP gradient all-reduce and the precision
    plugin apply as in the first pass), moves the weights back and lets the optimizer step with the
    gradient taken at ``w + e(w)``. On a :class:`~robustlit.module.RobustModule` the second pass reuses
    the batch that the transforms produced (:meth:`~robustlit.module.RobustModule.replay_step`), so
    Mixup or adversarial examples are not drawn again. BatchNorm running statistics are restored after
    the second pass, so they see each batch once.

    Gradient clipping applies to the second gradient. ``precision=16-mixed`` is refused (its gradient
    scaler has already unscaled the first gradient), and so is gradient accumulation (the second pass
    would only see the last micro-batch).

    Args:
        rho: Neighbourhood radius ρ (0.05 for CIFAR in the paper; ASAM uses 0.5 to 2).
        adaptive: ASAM's scale-invariant neighbourhood (see :class:`ASAM`).
        eta: ASAM's η.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[SAM(rho=0.05)], precision="bf16-mixed")  # doctest: +SKIP
    """

    def __init__(self, rho: float = 0.05, adaptive: bool = False, eta: float = 0.01) -> None:
        if rho <= 0:
            raise MisconfigurationException(f"{type(self).__name__} needs rho > 0, got {rho}")
        if eta < 0:
            raise MisconfigurationException(f"{type(self).__name__} needs eta >= 0, got {eta}")
        self.rho = rho
        self.adaptive = adaptive
        self.eta = eta
        self._batch: tuple[Any, int] | None = None
        self._backward_ran = False

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse the combinations SAM would train wrongly."""
        if stage != "fit":
            return
        name = type(self).__name__
        precision = str(trainer.precision)
        if precision in _REFUSED_PRECISION:
            raise MisconfigurationException(
                f"{name} does not support precision={precision}; use bf16-mixed or 32 "
                "(the fp16 gradient scaler has already unscaled the first gradient)"
            )
        if trainer.accumulate_grad_batches != 1:
            raise MisconfigurationException(
                f"{name} does not support accumulate_grad_batches={trainer.accumulate_grad_batches}; set it to 1 "
                "and raise the batch size instead (the second pass would only see the last micro-batch)"
            )
        if not pl_module.automatic_optimization:
            raise MisconfigurationException(
                f"{name} needs automatic optimization; with manual optimization call "
                "robustlit.optim.sam_perturbation in your training_step"
            )

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Remember the batch for the second pass."""
        self._batch = (batch, batch_idx)
        self._backward_ran = False

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        """Note that this step computed a gradient (SWA's BatchNorm epoch skips backward)."""
        self._backward_ran = True

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Drop the batch reference."""
        self._batch = None

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: Optimizer) -> None:
        """Replace the gradient by the gradient at ``w + e(w)``."""
        if self._batch is None or not self._backward_ran:  # no fresh gradient: leftovers must not be replayed
            return
        named = _optimized_parameters(pl_module, optimizer)
        perturbation = sam_perturbation(named, self.rho, adaptive=self.adaptive, eta=self.eta)
        if not perturbation:
            return
        parameters = dict(named)
        saved = {name: parameters[name].detach().clone() for name in perturbation}
        buffers = _batchnorm_buffers(pl_module)
        with torch.no_grad():
            for name, e in perturbation.items():
                parameters[name].add_(e.to(parameters[name].dtype))
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = self._second_pass(trainer, pl_module, optimizer)
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    parameters[name].copy_(value)
                for buffer, value in buffers:
                    buffer.copy_(value)
        pl_module.log("train/sam/perturbed_loss", loss.detach(), batch_size=_batch_size(self._batch[0]))

    def _second_pass(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> Tensor:
        batch, batch_idx = self._batch  # type: ignore[misc]
        with torch.enable_grad():
            if isinstance(pl_module, RobustModule):
                with pl_module.replay_step():
                    output = trainer.strategy.training_step(batch, batch_idx)
            else:
                output = trainer.strategy.training_step(batch, batch_idx)
            loss = output["loss"] if isinstance(output, dict) else output
            if not isinstance(loss, Tensor):
                raise MisconfigurationException(
                    f"{type(self).__name__} needs training_step to return a loss tensor or a dict with 'loss'"
                )
            trainer.strategy.backward(loss, optimizer)
        return loss


class ASAM(SAM):
    """Adaptive SAM: a scale-invariant neighbourhood ``‖T⁻¹e‖ ≤ ρ`` with ``T = |w| + η`` (optimizer level).

    Reference: Kwon et al., "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of
    Deep Neural Networks", ICML 2021 (ρ = 0.5, η = 0.01 for CIFAR-10 with SGD). Everything else is as in
    :class:`SAM`.

    Args:
        rho: Neighbourhood radius ρ.
        eta: η added to ``|w|``.

    Example:
        >>> ASAM(rho=0.5).adaptive
        True
    """

    def __init__(self, rho: float = 0.5, eta: float = 0.01) -> None:
        super().__init__(rho=rho, adaptive=True, eta=eta)


def _optimized_parameters(module: nn.Module, optimizer: Optimizer) -> list[tuple[str, Tensor]]:
    """``(name, parameter)`` for the parameters ``optimizer`` updates, in the module's order."""
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [(name, p) for name, p in module.named_parameters() if id(p) in in_optimizer]


def _batchnorm_buffers(module: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """``(buffer, copy)`` of every BatchNorm running statistic, to undo the second pass's update."""
    return [
        (buffer, buffer.detach().clone())
        for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)
        for buffer in layer.buffers(recurse=False)
    ]


def _batch_size(batch: Any) -> int:
    return int(unpack_batch(batch)[0].shape[0])
