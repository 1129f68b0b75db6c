"""Mixup: train on convex combinations of pairs of examples and of their labels."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.callbacks.base import BatchTransformCallback
from robustlit.losses import one_hot_targets
from robustlit.module import StepContext


def mixup_batch(inputs: Tensor, targets: Tensor, lam: float, permutation: Tensor) -> tuple[Tensor, Tensor]:
    """Mix a batch with a permutation of itself: ``λ·a + (1 − λ)·a[perm]`` for inputs and soft targets.

    Reference: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.

    Args:
        inputs: Batch of inputs ``(N, ...)``.
        targets: Soft targets ``(N, K)``.
        lam: Mixing weight of the original batch, in [0, 1].
        permutation: Partner index of each sample.

    Returns:
        Mixed inputs and mixed soft targets.

    Example:
        >>> x, y = torch.tensor([[0.0], [1.0]]), torch.eye(2)
        >>> mixed_x, mixed_y = mixup_batch(x, y, 0.75, torch.tensor([1, 0]))
        >>> mixed_x.flatten().tolist(), mixed_y[0].tolist()
        ([0.25, 0.75], [0.75, 0.25])
    """
    return lam * inputs + (1.0 - lam) * inputs[permutation], lam * targets + (1.0 - lam) * targets[permutation]


class Mixup(BatchTransformCallback):
    """Mixup regularizer (batch transform; works on RobustModule and on plain LightningModules).

    Each training batch is mixed with a shuffled copy of itself using λ ~ Beta(α, α); labels
    become soft targets. Its random state is saved in checkpoints, so resumed runs continue the
    same sequence.

    Args:
        mixup_alpha: Beta concentration α (> 0). 0.2 is common for CIFAR, 1.0 mixes uniformly.
        num_classes: Number of classes; read from ``pl_module.num_classes`` when omitted.
        prob: Probability of mixing a given batch.
        seed: Seed of the λ/partner draws; defaults to ``torch.initial_seed()`` at setup.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[Mixup(mixup_alpha=0.2)], max_epochs=1)  # doctest: +SKIP
    """

    order = 10

    def __init__(self, mixup_alpha: float = 0.2, num_classes: int | None = None, prob: float = 1.0,
                 seed: int | None = None) -> None:
        super().__init__()
        if mixup_alpha <= 0:
            raise MisconfigurationException(f"Mixup needs mixup_alpha > 0, got {mixup_alpha}")
        if not 0.0 <= prob <= 1.0:
            raise MisconfigurationException(f"Mixup needs 0 <= prob <= 1, got {prob}")
        self.mixup_alpha = mixup_alpha
        self.num_classes = num_classes
        self.prob = prob
        self.seed = seed
        self._rng: np.random.Generator | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve the number of classes and seed the generator."""
        if stage == "fit":
            self.num_classes = self.num_classes or getattr(pl_module, "num_classes", None)
            if not self.num_classes:
                raise MisconfigurationException(
                    "Mixup needs the number of classes: pass Mixup(num_classes=K) or set pl_module.num_classes"
                )
            if self._rng is None:
                self._rng = np.random.default_rng(torch.initial_seed() if self.seed is None else self.seed)
        super().setup(trainer, pl_module, stage)

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Mix the batch; leaves it unchanged (but one-hot) with probability ``1 - prob``."""
        assert self._rng is not None and self.num_classes is not None, "Mixup.setup() has not run"
        targets = one_hot_targets(ctx.targets, self.num_classes).to(ctx.inputs.dtype)
        if self._rng.random() >= self.prob:
            return ctx.inputs, targets
        lam = float(self._rng.beta(self.mixup_alpha, self.mixup_alpha))
        permutation = torch.from_numpy(self._rng.permutation(ctx.inputs.shape[0])).to(ctx.inputs.device)
        return mixup_batch(ctx.inputs, targets, lam, permutation)

    def state_dict(self) -> dict[str, Any]:
        """Random state, so a resumed run draws the same λ sequence."""
        return {"rng": None if self._rng is None else self._rng.bit_generator.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the random state saved by :meth:`state_dict`."""
        if state_dict.get("rng") is not None:
            self._rng = np.random.default_rng()
            self._rng.bit_generator.state = state_dict["rng"]
