"""Certified training with IBP and CROWN-IBP: a worst-case margin loss under a smoothed ε ramp."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from robustlit.attacks import parse_eps
from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.certify.ibp import robust_cross_entropy
from robustlit.certify.schedule import smoothed_ramp
from robustlit.certify.verify import margin_lower_bounds, verified
from robustlit.module import StepContext

TRAINING_METHODS = ("ibp", "crown-ibp")


class IBPTraining(LossTermCallback):
    """Train for verified L∞ robustness with IBP or CROWN-IBP bounds (loss term; needs RobustModule).

    References: Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably
    Robust Models", 2018; Zhang et al., "Towards Stable and Efficient Training of Verifiably Robust
    Neural Networks", ICLR 2020.

    The loss is ``κ·CE(f(x), y) + (1 − κ)·CE(−m̲, y)``, where ``m̲`` lower-bounds the margins
    ``f_y − f_i`` over the ε-ball (with the last layer elided). For CROWN-IBP,
    ``m̲ = β·m̲_CROWN-IBP + (1 − β)·m̲_IBP`` with ``β = 1 − (1 − β_final)·ε/ε_max``. ε follows
    :func:`~robustlit.certify.smoothed_ramp` from 0 to ``eps`` over ``ramp_epochs`` after
    ``warmup_epochs`` of clean training, and κ goes linearly from ``kappa_start`` to ``kappa_end`` over the
    same ramp. The schedule is a function of the global step, so resuming continues it. BatchNorm in
    training mode is bounded with the clean batch's statistics. Gowal et al. train with ε 1.1 times
    the ε they test at.

    Args:
        eps: Final training radius (L∞, input units), a number or a fraction string.
        method: ``"ibp"`` or ``"crown-ibp"``.
        warmup_epochs: Epochs of clean training before the ramp (may be fractional).
        ramp_epochs: Epochs over which ε grows to ``eps`` (may be fractional).
        kappa_start: Weight of the clean loss at the start of the ramp.
        kappa_end: Weight of the clean loss at the end of the ramp (0.5 in Gowal et al., 0 in Zhang et al.).
        beta_final: CROWN-IBP share of the bound at the end of the ramp (ignored by ``"ibp"``).
        ramp_mid: Fraction of the ramp spent on its polynomial part.
        ramp_power: Exponent of the polynomial part.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[IBPTraining(eps=0.1, method="crown-ibp")])  # doctest: +SKIP
    """

    name = "ibp"

    def __init__(
        self,
        eps: float | str = 0.1,
        method: str = "crown-ibp",
        warmup_epochs: float = 0.0,
        ramp_epochs: float = 10.0,
        kappa_start: float = 1.0,
        kappa_end: float = 0.5,
        beta_final: float = 0.0,
        ramp_mid: float = 0.25,
        ramp_power: float = 4.0,
    ) -> None:
        super().__init__(weight=1.0)
        self.eps = parse_eps(eps)
        if self.eps <= 0:
            raise MisconfigurationException(f"IBPTraining needs eps > 0, got {eps}")
        if method not in TRAINING_METHODS:
            raise MisconfigurationException(
                f"IBPTraining method={method!r}; choose one of {', '.join(TRAINING_METHODS)}"
            )
        if warmup_epochs < 0 or ramp_epochs < 0:
            raise MisconfigurationException(
                f"IBPTraining needs warmup_epochs >= 0 and ramp_epochs >= 0, got {warmup_epochs} and {ramp_epochs}"
            )
        for option, value in (("kappa_start", kappa_start), ("kappa_end", kappa_end), ("beta_final", beta_final)):
            if not 0.0 <= value <= 1.0:
                raise MisconfigurationException(f"IBPTraining needs 0 <= {option} <= 1, got {value}")
        if not 0 <= ramp_mid < 1 or ramp_power < 1:
            raise MisconfigurationException(
                f"IBPTraining needs 0 <= ramp_mid < 1 and ramp_power >= 1, got {ramp_mid} and {ramp_power}"
            )
        self.method = method
        self.warmup_epochs = warmup_epochs
        self.ramp_epochs = ramp_epochs
        self.kappa_start, self.kappa_end, self.beta_final = kappa_start, kappa_end, beta_final
        self.ramp_mid, self.ramp_power = ramp_mid, ramp_power
        self._steps_per_epoch = 1
        self._step = 0

    def schedule(self, step: int) -> tuple[float, float, float]:
        """``(ε, κ, β)`` at an optimizer step.

        Example:
            >>> callback = IBPTraining(eps=0.1, warmup_epochs=1, ramp_epochs=2, beta_final=0.0)
            >>> [tuple(round(v, 3) for v in callback.schedule(t)) for t in (0, 3)]
            [(0.0, 1.0, 1.0), (0.1, 0.5, 0.0)]
        """
        start = self.warmup_epochs * self._steps_per_epoch
        length = self.ramp_epochs * self._steps_per_epoch
        eps = smoothed_ramp(step, start, length, self.eps, self.ramp_mid, self.ramp_power)
        progress = 1.0 if length == 0 and step >= start else min(max((step - start) / max(length, 1e-12), 0.0), 1.0)
        kappa = self.kappa_start + (self.kappa_end - self.kappa_start) * progress
        beta = 0.0 if self.method == "ibp" else 1.0 - (1.0 - self.beta_final) * eps / self.eps
        return eps, kappa, beta

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        """Read the step and the number of optimizer steps per epoch for the schedule."""
        batches = trainer.num_training_batches
        if batches == float("inf"):
            batches = trainer.estimated_stepping_batches / max(trainer.max_epochs or 1, 1)
        self._steps_per_epoch = max(1, int(batches) // max(trainer.accumulate_grad_batches, 1))
        self._step = trainer.global_step

    @override
    def term(self, ctx: StepContext) -> Tensor:
        """``(1 − κ)·(robust CE − base loss)``, so the total loss is the κ-mix of the two."""
        eps, kappa, beta = self.schedule(self._step)
        module = ctx.module
        logs = {"eps": eps, "kappa": kappa, "beta": beta}
        if eps == 0 or kappa == 1:
            self._log(module, logs)
            return ctx.logits.sum() * 0.0
        y = ctx.hard_targets
        methods = ["ibp"] + (["crown-ibp"] if beta > 0 else [])
        margins = margin_lower_bounds(module, ctx.inputs, y, eps, methods)
        bound = margins["ibp"] if beta == 0 else beta * margins["crown-ibp"] + (1 - beta) * margins["ibp"]
        robust = robust_cross_entropy(bound, y)
        base = module.robust_loss(ctx.logits, ctx.targets)
        logs["robust_loss"] = float(robust.detach())
        logs["verified_error"] = 1.0 - float(verified(bound.detach(), y).float().mean())
        self._log(module, logs)
        return (1.0 - kappa) * (robust - base)

    @staticmethod
    def _log(module: torch.nn.Module, values: dict[str, float]) -> None:
        if getattr(module, "_trainer", None) is not None:
            for key, value in values.items():
                module.log(f"train/ibp/{key}", float(value))
