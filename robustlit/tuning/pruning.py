"""Lightning callback that reports a validation metric to an optuna trial and stops hopeless trials."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override


class OptunaPruning(L.Callback):
    """Report ``monitor`` after every validation epoch; raise ``optuna.TrialPruned`` when the pruner says so.

    Hyperband and successive halving compare trials at the same epoch (optuna's "step"), so a trial that
    trails its peers after a few epochs stops there instead of training to the end. Works on any
    LightningModule that logs ``monitor`` during validation; single-process only (tuning runs one trial per
    process), and the exception ends ``trainer.fit`` the way optuna expects.

    Args:
        trial: The optuna trial being evaluated.
        monitor: Logged validation metric, e.g. ``val/acc``.
        mode: ``max`` if higher is better, ``min`` otherwise; values are negated when the study's direction
            is the opposite, so the pruner always compares in the study's sense.
        step_offset: Added to the epoch index to make optuna's step; 1 makes the step the number of finished
            epochs, the resource Hyperband and successive halving count.

    Example:
        >>> import optuna
        >>> trial = optuna.create_study(direction="maximize").ask()
        >>> OptunaPruning(trial, monitor="val/acc").monitor
        'val/acc'
    """

    def __init__(self, trial: Any, monitor: str = "val/acc", mode: str = "max", step_offset: int = 0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"OptunaPruning mode must be 'max' or 'min', got {mode!r}")
        self.trial = trial
        self.monitor = monitor
        self.mode = mode
        self.step_offset = step_offset
        self.pruned_at: int | None = None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size > 1:
            raise MisconfigurationException("OptunaPruning runs one trial per process; tune with trainer.devices=1")

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import optuna

        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise MisconfigurationException(
                f"OptunaPruning monitors {self.monitor!r}, which validation did not log; logged: "
                f"{', '.join(sorted(trainer.callback_metrics)) or 'nothing'}"
            )
        maximize = self.trial.study.direction == optuna.study.StudyDirection.MAXIMIZE
        sign = 1.0 if (self.mode == "max") == maximize else -1.0
        epoch = trainer.current_epoch
        self.trial.report(sign * float(value), step=epoch + self.step_offset)
        if self.trial.should_prune():
            self.pruned_at = epoch
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {self.monitor}={float(value):.4f}")
