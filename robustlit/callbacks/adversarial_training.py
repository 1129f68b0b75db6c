"""PGD adversarial training (Madry et al.): train on worst-case examples inside an ε-ball."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.attacks import parse_eps, pgd
from robustlit.callbacks.base import BatchTransformCallback, check_attack_settings
from robustlit.module import StepContext


class AdversarialTraining(BatchTransformCallback):
    """Replace each training batch by PGD adversarial examples (batch transform; works on any module).

    Reference: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
    Examples are generated with the model in eval mode, so BatchNorm running statistics only see the
    batch the model actually trains on. Runs after label smoothing and mixup (``order = 20``), and
    attacks whatever targets those produced.

    Args:
        eps: Radius of the threat model in input units (8/255 for CIFAR L∞); a number or a string like "8/255".
        alpha: PGD step size (number or fraction string); defaults to ``2.5 * eps / steps``.
        steps: PGD steps (10 in Madry et al.; 1 with ``alpha = 1.25 * eps`` gives FGSM-RS).
        norm: ``"Linf"`` or ``"L2"``.
        random_start: Start PGD from a random point of the ball.
        warmup_epochs: Epochs at the start trained on clean inputs.

    Example:
        >>> import lightning as L
        >>> at = AdversarialTraining(eps=8 / 255, steps=10)
        >>> trainer = L.Trainer(callbacks=[at], max_epochs=1)  # doctest: +SKIP
    """

    order = 20

    def __init__(self, eps: float | str = 8 / 255, alpha: float | str | None = None, steps: int = 10,
                 norm: str = "Linf", random_start: bool = True, warmup_epochs: int = 0) -> None:
        super().__init__()
        eps = check_attack_settings("AdversarialTraining", eps, steps, norm)
        alpha = None if alpha is None else parse_eps(alpha)
        if warmup_epochs < 0:
            raise MisconfigurationException(f"AdversarialTraining needs warmup_epochs >= 0, got {warmup_epochs}")
        self.eps = eps
        self.alpha = alpha
        self.steps = steps
        self.norm = norm
        self.random_start = random_start
        self.warmup_epochs = warmup_epochs
        self._epoch = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Track the epoch for the warm-up."""
        self._epoch = trainer.current_epoch

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """PGD examples for the current targets (clean inputs during warm-up)."""
        if self._epoch < self.warmup_epochs:
            return ctx.inputs, ctx.targets
        adversarial = pgd(
            ctx.module, ctx.inputs, ctx.targets, eps=self.eps, alpha=self.alpha, steps=self.steps,
            norm=self.norm, random_start=self.random_start, keep_best=False,
        )
        return adversarial, ctx.targets
