"""CutMix: paste a random box from a partner image and mix the labels by the pasted area."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from robustlit.callbacks.mixup import Mixup
from robustlit.losses import one_hot_targets
from robustlit.module import StepContext


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box ``(top, bottom, left, right)`` of area about ``(1 − λ)·H·W`` around a uniform centre, clipped.

    Reference: Yun et al., "CutMix", ICCV 2019: sides ``H·√(1 − λ)`` and ``W·√(1 − λ)``.

    Example:
        >>> cutmix_box(8, 8, 0.75, np.random.default_rng(0))
        (4, 8, 3, 7)
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def cutmix_batch(inputs: Tensor, targets: Tensor, box: tuple[int, int, int, int],
                 permutation: Tensor) -> tuple[Tensor, Tensor]:
    """Paste ``box`` of ``inputs[permutation]`` into ``inputs``; weigh soft targets by the exact pasted area.

    Args:
        inputs: Batch ``(N, C, H, W)``.
        targets: Soft targets ``(N, K)``.
        box: ``(top, bottom, left, right)``.
        permutation: Partner index of each sample.

    Returns:
        Mixed inputs and targets ``λ·y + (1 − λ)·y[perm]`` with ``λ = 1 − box area / (H·W)``.

    Example:
        >>> x, y = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]), torch.eye(2)
        >>> mixed_x, mixed_y = cutmix_batch(x, y, (0, 1, 0, 2), torch.tensor([1, 0]))
        >>> mixed_x[0, 0].tolist(), mixed_y[0].tolist()
        ([[1.0, 1.0], [0.0, 0.0]], [0.5, 0.5])
    """
    top, bottom, left, right = box
    mixed = inputs.clone()
    mixed[:, :, top:bottom, left:right] = inputs[permutation][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (inputs.shape[-2] * inputs.shape[-1])
    return mixed, lam * targets + (1.0 - lam) * targets[permutation]


class CutMix(Mixup):
    """CutMix regularizer (batch transform; works on RobustModule and on plain LightningModules).

    Reference: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
    Features", ICCV 2019 (α = 1). λ ~ Beta(α, α) sets the box size; the label weights use the area
    actually pasted after clipping at the border. Shares Mixup's seeding and resumable random state.

    Args:
        cutmix_alpha: Beta concentration α (> 0).
        num_classes: Number of classes; read from ``pl_module.num_classes`` when omitted.
        prob: Probability of mixing a given batch.
        seed: Seed of the draws; defaults to ``torch.initial_seed()`` at setup.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[CutMix(cutmix_alpha=1.0)], max_epochs=1)  # doctest: +SKIP
    """

    def __init__(self, cutmix_alpha: float = 1.0, num_classes: int | None = None, prob: float = 1.0,
                 seed: int | None = None) -> None:
        super().__init__(mixup_alpha=cutmix_alpha, num_classes=num_classes, prob=prob, seed=seed)

    @property
    def cutmix_alpha(self) -> float:
        """The Beta concentration α."""
        return self.mixup_alpha

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Cut and paste; leaves the batch unchanged (but one-hot) with probability ``1 - prob``."""
        assert self._rng is not None and self.num_classes is not None, "CutMix.setup() has not run"
        targets = one_hot_targets(ctx.targets, self.num_classes).to(ctx.inputs.dtype)
        if self._rng.random() >= self.prob:
            return ctx.inputs, targets
        lam = float(self._rng.beta(self.mixup_alpha, self.mixup_alpha))
        box = cutmix_box(ctx.inputs.shape[-2], ctx.inputs.shape[-1], lam, self._rng)
        permutation = torch.from_numpy(self._rng.permutation(ctx.inputs.shape[0])).to(ctx.inputs.device)
        return cutmix_batch(ctx.inputs, targets, box, permutation)
