"""Stochastic depth with a schedule, driving the drop-path rates of timm models."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from timm.layers import DropPath
from torch import nn

SCHEDULES = ("constant", "linear")


class StochasticDepth(L.Callback):
    """Set and schedule the drop-path (stochastic depth) rates of a timm model (works on any LightningModule).

    Reference: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016 (the linear decay rule:
    block ``l`` of ``L`` is dropped with probability ``l/L · p_L``); Zoph et al., "Learning Transferable
    Architectures", CVPR 2018 (ScheduledDropPath: rates ramp up linearly over training). The model must
    contain timm ``DropPath`` modules, which timm builds only for ``drop_path_rate > 0``: use
    ``model=timm model.drop_path_rate=0.1`` (any positive value; this callback overrides the rates).
    Block ``i`` of ``n`` (in module order) gets ``drop_path_rate · i/(n − 1)`` (timm's linspace rule),
    times ``global_step / total_steps`` under the ``linear`` schedule.

    Args:
        drop_path_rate: Rate of the deepest block, in [0, 1).
        schedule: ``"constant"`` or ``"linear"`` (ramp from 0 over the run).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[StochasticDepth(drop_path_rate=0.1, schedule="linear")])  # doctest: +SKIP
    """

    def __init__(self, drop_path_rate: float = 0.1, schedule: str = "linear") -> None:
        if not 0.0 <= drop_path_rate < 1.0:
            raise MisconfigurationException(f"StochasticDepth needs 0 <= drop_path_rate < 1, got {drop_path_rate}")
        if schedule not in SCHEDULES:
            raise MisconfigurationException(
                f"StochasticDepth schedule={schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        self.drop_path_rate, self.schedule = drop_path_rate, schedule
        self._blocks: list[DropPath] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Find the DropPath modules, or explain how to get them."""
        if stage != "fit":
            return
        self._blocks = drop_path_modules(pl_module)
        if not self._blocks:
            raise MisconfigurationException(
                f"StochasticDepth found no timm DropPath modules in {type(pl_module).__name__}; build a timm model "
                "with drop path, e.g. model=timm model.drop_path_rate=0.1 (timm creates them only for a rate > 0)"
            )

    def rates(self, progress: float) -> list[float]:
        """Per-block rates at training progress ``progress`` in [0, 1].

        Example:
            >>> sd = StochasticDepth(drop_path_rate=0.2, schedule="linear")
            >>> sd._blocks = [DropPath(), DropPath(), DropPath()]
            >>> sd.rates(0.5)
            [0.0, 0.05, 0.1]
        """
        factor = 1.0 if self.schedule == "constant" else min(max(progress, 0.0), 1.0)
        count = len(self._blocks)
        return [self.drop_path_rate * factor * (i / (count - 1) if count > 1 else 1.0) for i in range(count)]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Set every block's rate for this step."""
        total = trainer.estimated_stepping_batches  # infinite for a run without max_epochs/max_steps
        progress = 1.0 if math.isinf(total) else trainer.global_step / max(total, 1)
        for block, rate in zip(self._blocks, self.rates(progress), strict=True):
            block.drop_prob = rate

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Forget the blocks (their last rates stay; DropPath is inactive in eval mode)."""
        self._blocks = []


def drop_path_modules(model: nn.Module) -> list[DropPath]:
    """The timm DropPath modules of ``model``, in module order.

    Example:
        >>> len(drop_path_modules(nn.Sequential(DropPath(0.1), nn.ReLU())))
        1
    """
    return [m for m in model.modules() if isinstance(m, DropPath)]
