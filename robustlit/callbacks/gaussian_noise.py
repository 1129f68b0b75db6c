"""Gaussian input-noise augmentation, the training recipe of randomized-smoothing base classifiers."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from robustlit.callbacks.base import BatchTransformCallback
from robustlit.module import StepContext
from robustlit.rng import normal, sample_seeds


class GaussianNoise(BatchTransformCallback):
    """Add ``N(0, σ²)`` noise to every training input (batch transform; works on any module).

    Reference: Cohen et al., "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019,
    which trains the base classifier with the same σ it is later certified with. Noise is added in
    input units, before the model's own normalization, and not clipped, matching
    :func:`robustlit.certify.smoothed_certify`. Runs last (``order = 30``), so it perturbs whatever
    mixup or adversarial training produced. The noise of step ``t`` and row ``i`` is drawn from a
    counter-based stream keyed by ``(seed, t, i)``, so a resumed run continues the same sequence
    without saved state.

    Args:
        sigma: Noise standard deviation in input units (> 0).
        seed: Seed of the noise; defaults to ``torch.initial_seed()`` at setup.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[GaussianNoise(sigma=0.25)], max_epochs=1)  # doctest: +SKIP
    """

    order = 30

    def __init__(self, sigma: float = 0.25, seed: int | None = None) -> None:
        super().__init__()
        if sigma <= 0:
            raise MisconfigurationException(f"GaussianNoise needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)
        self.seed = seed
        self._step = 0

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Fix the seed (from the global seed when none was given) and register the transform."""
        if stage == "fit" and self.seed is None:
            self.seed = torch.initial_seed() & 0xFFFFFFFF
        super().setup(trainer, pl_module, stage)

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Remember the global step (it keys the noise), then rewrite plain modules' batches."""
        self._step = trainer.global_step
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    @override
    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Noisy inputs; targets unchanged."""
        inputs = ctx.inputs
        rows = torch.arange(inputs.shape[0], device=inputs.device)
        seeds = sample_seeds(0 if self.seed is None else self.seed, rows, stream=self._step)
        noise = normal(seeds, inputs.shape[1:], dtype=inputs.dtype)
        return inputs + self.sigma * noise, ctx.targets
