"""Calibration of the predicted probabilities."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.metrics import (
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from robustlit.reporting.schema import Metric
from robustlit.suites.base import EvaluationSuite


class CalibrationSuite(EvaluationSuite):
    """ECE, MCE, Brier score and NLL of softmax probabilities (evaluation suite; any LightningModule).

    Args:
        n_bins: Equal-width confidence bins for ECE/MCE (15 as in Guo et al. 2017).
        limit: Only evaluate the first ``limit`` samples.
        stages: Loops to run in.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[CalibrationSuite(n_bins=15)])  # doctest: +SKIP
    """

    suite = "calibration"

    def __init__(self, n_bins: int = 15, limit: int | None = None,
                 stages: tuple[str, ...] | list[str] = ("test",)) -> None:
        super().__init__(limit=limit, stages=stages)
        if n_bins < 1:
            raise MisconfigurationException(f"CalibrationSuite n_bins must be at least 1, got {n_bins}")
        self.n_bins = n_bins

    def reset(self) -> None:
        """Drop the collected logits."""
        self._logits: list[Tensor] = []
        self._labels: list[Tensor] = []

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Collect logits and labels (on CPU)."""
        self._logits.append(model(x).float().cpu())
        self._labels.append(y.cpu())

    def compute(self) -> list[Metric]:
        """``calibration/{ece,mce,brier,nll}``."""
        if not self._logits:
            return []
        logits, labels = torch.cat(self._logits), torch.cat(self._labels)
        probs = logits.softmax(dim=1)
        binned = {"bins": self.n_bins}
        return [
            Metric(self.suite, "ece", expected_calibration_error(probs, labels, self.n_bins), binned),
            Metric(self.suite, "mce", maximum_calibration_error(probs, labels, self.n_bins), binned),
            Metric(self.suite, "brier", brier_score(probs, labels)),
            Metric(self.suite, "nll", negative_log_likelihood(logits, labels)),
        ]
