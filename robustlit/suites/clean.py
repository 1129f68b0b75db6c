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
        """Zero the counts."""
        self._correct = 0
        self._total = 0

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Count correct predictions."""
        self._correct += int((model(x).argmax(dim=1) == y).sum())
        self._total += y.shape[0]

    def compute(self) -> list[Metric]:
        """``clean/accuracy``."""
        return [Metric(self.suite, "accuracy", self._correct / max(self._total, 1), {"n": self._total})]
