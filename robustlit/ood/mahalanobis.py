"""Mahalanobis distance to the closest class mean under a shared covariance (Lee et al., NeurIPS 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlit.errors import DataError
from robustlit.ood.base import OODDetector
from robustlit.ood.streaming import FixedBlocks


class Mahalanobis(OODDetector):
    """Negative Mahalanobis distance of the features to the closest class mean.

    Class means and one shared (tied) covariance of the ID features are built from running float64 sums
    (per-class sums, counts and the Gram matrix ``Σ f fᵀ``): memory is ``O(K·D + D²)`` whatever the size
    of the fit data. Rows are summed in fixed blocks of ``block_size``, so a fit in one pass and a fit in
    chunks give identical statistics. Score: ``−min_c (f − μ_c)ᵀ Σ⁺ (f − μ_c)`` with ``Σ⁺`` the
    pseudo-inverse. This is the single-layer detector without the paper's input preprocessing and
    layer ensemble. Classes come from the labels of the fit data.

    Args:
        model: The classifier.
        layer: Feature layer (None: the penultimate features).
        block_size: Rows summed at a time.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> detector = Mahalanobis(net).fit([(torch.rand(32, 3, 2, 2), torch.arange(32) % 2)])
        >>> detector.score(torch.rand(5, 3, 2, 2)).shape
        torch.Size([5])
    """

    name = "mahalanobis"
    requires_fit = True
    uses_features = True

    def __init__(self, model: nn.Module, layer: str | None = None, block_size: int = 256) -> None:
        super().__init__(model, layer)
        self.block_size = block_size
        self.means: Tensor | None = None
        self.precision: Tensor | None = None

    def start_fit(self) -> None:
        """Zero the running sums."""
        self._sums: Tensor | None = None
        self._counts: Tensor | None = None
        self._gram: Tensor | None = None
        self._blocks = FixedBlocks(self.block_size, self._consume)
        self.fitted = False

    def _consume(self, features: Tensor, labels: Tensor) -> None:
        features = features.double()
        if self._gram is None or self._sums is None or self._counts is None:
            raise RuntimeError("Mahalanobis.partial_fit got data before the statistics were set up")
        self._gram += features.T @ features
        self._sums.index_add_(0, labels, features)
        self._counts += torch.bincount(labels, minlength=self._counts.shape[0])

    def partial_fit(self, features: Tensor | None, logits: Tensor, labels: Tensor) -> None:
        """Add a batch's features to the per-class sums and the Gram matrix."""
        if self._gram is None:
            size, classes = features.shape[1], logits.shape[1]
            self._gram = torch.zeros(size, size, dtype=torch.float64, device=features.device)
            self._sums = torch.zeros(classes, size, dtype=torch.float64, device=features.device)
            self._counts = torch.zeros(classes, dtype=torch.int64, device=features.device)
        self._blocks.add(features.detach(), labels.detach().long())

    def finish_fit(self) -> None:
        """Class means, the shared covariance and its pseudo-inverse."""
        self._blocks.flush()
        if self._counts is None or int(self._counts.sum()) < 2:
            raise DataError("Mahalanobis needs at least two ID samples to fit")
        present = self._counts > 0
        counts = self._counts[present].double()
        means = self._sums[present] / counts[:, None]
        total = counts.sum()
        covariance = (self._gram - (means.T * counts) @ means) / total
        self.means = means
        self.precision = torch.linalg.pinv(covariance, hermitian=True)
        self.covariance = covariance
        self.fitted = True

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """``−min_c`` squared Mahalanobis distance to the class means."""
        self._check_fitted()
        f = features.double().to(self.means.device)
        projected = f @ self.precision
        distances = (
            (projected * f).sum(dim=1, keepdim=True)
            - 2 * projected @ self.means.T
            + ((self.means @ self.precision) * self.means).sum(dim=1)[None, :]
        )
        return (-distances.amin(dim=1)).float().to(features.device)
