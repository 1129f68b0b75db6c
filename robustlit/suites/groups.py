"""Accuracy per annotated group, the worst group's and their average (spurious correlations, group shift)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from typing_extensions import override

from robustlit.data.groups import dataset_groups
from robustlit.reporting.schema import Metric
from robustlit.suites.base import EvaluationSuite, first_loader


class GroupSuite(EvaluationSuite):
    """Per-group, worst-group and average-over-groups accuracy (evaluation suite; works on any LightningModule).

    Needs a group-annotated evaluation set (:mod:`robustlit.data.groups`, e.g. ``data=colored_digits``):
    the group of each sample is read from the loader's dataset by sample id, so the result does not
    depend on the batch size or on how DDP shards the data. Groups with no evaluated sample are left
    out. Reports ``groups/accuracy {group}``, ``groups/worst_group_accuracy`` (the minimum over groups)
    and ``groups/average_accuracy`` (the unweighted mean over groups, so every group counts the same).

    Args:
        limit: Only evaluate the first ``limit`` samples.
        stages: ``"test"`` and/or ``"validate"``.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[GroupSuite()])  # doctest: +SKIP
    """

    suite = "groups"

    def __init__(self, limit: int | None = None, stages: tuple[str, ...] | list[str] = ("test",)) -> None:
        super().__init__(limit=limit, stages=stages)
        self._groups: Tensor | None = None
        self._names: tuple[str, ...] = ()

    def reset(self) -> None:
        """Nothing to reset: per-sample results live in the suite's store."""

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Record each sample's correctness and group."""
        if self._groups is None:
            raise MisconfigurationException(
                "GroupSuite needs a group-annotated evaluation set whose dataset has `groups` and `group_names` "
                "(e.g. data=colored_digits); drop `groups` from evaluation for other data"
            )
        self.store("correct", model(x).argmax(dim=1) == y, sample_ids)
        self.store("group", self._groups[sample_ids.cpu()], sample_ids)

    def compute(self) -> list[Metric]:
        """``groups/accuracy`` per group, ``groups/worst_group_accuracy`` and ``groups/average_accuracy``."""
        if "correct" not in self._stored:
            return []
        correct, groups = self.stored("correct").float(), self.stored("group")
        metrics = []
        for group, name in enumerate(self._names):
            members = groups == group
            if bool(members.any()):
                metrics.append(Metric(self.suite, "accuracy", correct[members].mean().item(), {"group": name}))
        accuracies = [metric.value for metric in metrics]
        metrics.append(Metric(self.suite, "worst_group_accuracy", min(accuracies)))
        metrics.append(Metric(self.suite, "average_accuracy", sum(accuracies) / len(accuracies)))
        return metrics

    @override
    def evaluate(self, model: nn.Module, loader: Any) -> list[Metric]:
        """Run over ``loader``, whose dataset must be group-annotated."""
        self._read_groups(loader)
        return super().evaluate(model, loader)

    @override
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Read the test set's groups, then reset."""
        self._read_groups(first_loader(trainer.test_dataloaders))
        super().on_test_epoch_start(trainer, pl_module)

    @override
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Read the validation set's groups, then reset."""
        self._read_groups(first_loader(trainer.val_dataloaders))
        super().on_validation_epoch_start(trainer, pl_module)

    def _read_groups(self, loader: Any) -> None:
        found = dataset_groups(loader.dataset) if hasattr(loader, "dataset") else None
        self._groups, self._names = (None, ()) if found is None else found

