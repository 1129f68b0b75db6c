"""Label smoothing as a batch transform."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.callbacks.base import BatchTransformCallback
from robustlit.losses import label_smoothing_targets
from robustlit.module import StepContext


class LabelSmoothing(BatchTransformCallback):
    """Train on smoothed targets ``(1 − s)·onehot(y) + s/K`` (batch transform; works on any module).

    Reference: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016.
    Runs first (``order = 0``), so mixup and adversarial training see the smoothed targets.

    Args:
        smoothing: Mass ``s`` moved to the uniform distribution, in [0, 1).
        num_classes: Number of classes; read from ``pl_module.num_classes`` when omitted.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[LabelSmoothing(smoothing=0.1)])  # doctest: +SKIP
    """

    order = 0

    def __init__(self, smoothing: float = 0.1, num_classes: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise MisconfigurationException(f"LabelSmoothing needs 0 <= smoothing < 1, got {smoothing}")
        self.smoothing = smoothing
        self.num_classes = num_classes

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve the number of classes."""
        if stage == "fit":
            self.num_classes = self.num_classes or getattr(pl_module, "num_classes", None)
            if not self.num_classes:
                raise MisconfigurationException(
                    "LabelSmoothing needs the number of classes: pass num_classes=K or set pl_module.num_classes"
                )
        super().setup(trainer, pl_module, stage)

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Smooth the targets; inputs are unchanged."""
        assert self.num_classes is not None, "LabelSmoothing.setup() has not run"
        return ctx.inputs, label_smoothing_targets(ctx.targets, self.num_classes, self.smoothing).to(ctx.inputs.dtype)
