"""Adversarial data augmentation: replace part of every batch by adversarial examples."""

from __future__ import annotations

import math

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.attacks import pgd
from robustlit.callbacks.base import BatchTransformCallback, check_attack_settings
from robustlit.module import StepContext


class AdversarialAugmentation(BatchTransformCallback):
    """Train on a mix of clean and adversarial examples (batch transform; works on any module).

    Reference: Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (the mixed
    clean/adversarial objective); Kurakin et al., "Adversarial Machine Learning at Scale", ICLR 2017
    (half of each batch replaced by adversarial examples). Here the first ``⌈fraction·N⌉`` samples of
    each (shuffled) batch are replaced by PGD examples, so the loss weighs clean and adversarial
    terms as ``1 − fraction`` and ``fraction``. ``steps = 1`` gives FGSM (step ε, no random start).

    Args:
        eps: Radius (number or fraction string such as "8/255").
        fraction: Share of each batch made adversarial, in (0, 1].
        steps: Attack steps.
        norm: ``"Linf"`` or ``"L2"`` (or ``"L1"``).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[AdversarialAugmentation(eps="8/255", fraction=0.5)])  # doctest: +SKIP
    """

    order = 20

    def __init__(self, eps: float | str = 8 / 255, fraction: float = 0.5, steps: int = 1, norm: str = "Linf") -> None:
        super().__init__()
        self.eps = check_attack_settings("AdversarialAugmentation", eps, steps, norm)
        if not 0 < fraction <= 1:
            raise MisconfigurationException(f"AdversarialAugmentation needs 0 < fraction <= 1, got {fraction}")
        self.fraction, self.steps, self.norm = fraction, steps, norm

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """The batch with its first ``⌈fraction·N⌉`` samples made adversarial."""
        count = math.ceil(self.fraction * ctx.inputs.shape[0])
        alpha = self.eps if self.steps == 1 else 2.5 * self.eps / self.steps
        adversarial = pgd(ctx.module, ctx.inputs[:count], ctx.targets[:count], eps=self.eps, alpha=alpha,
                          steps=self.steps, norm=self.norm, random_start=self.steps > 1, keep_best=False)
        return torch.cat([adversarial, ctx.inputs[count:]]), ctx.targets
