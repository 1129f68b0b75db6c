"""Clean accuracy."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlit.reporting.schema import Metric
from robustlit.suites.base import EvaluationSuite


class CleanSuite(EvaluationSuite):
    """Top-1 accuracy on unperturbed inputs (evaluation suite; works on any LightningModule).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[CleanSuite()])  # doctest: +SKIP
    """

    suite = "clean"

    def reset(self) -> None:
        """Nothing to reset: per-sample results live in the suite's store."""

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Record which samples are classified correctly."""
        self.store("correct", model(x).argmax(dim=1) == y, sample_ids)

    def compute(self) -> list[Metric]:
        """``clean/accuracy``."""
        if "correct" not in self._stored:
            return []
        correct = self.stored("correct")
        return [Metric(self.suite, "accuracy", correct.float().mean().item(), {"n": correct.shape[0]})]
