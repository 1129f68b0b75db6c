"""Calibration metrics: ECE (equal-width, adaptive and classwise), MCE, Brier score and NLL.

Equal-width bins are right-closed, ``(lo, hi]``, with the first bin also holding confidence 0; a
confidence of exactly 1.0 falls in the last bin (torchmetrics puts it in a hidden extra bin, its
issue #3510). Adaptive bins hold equal numbers of samples instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram.

    Attributes:
        edges: Bin edges, ``n_bins + 1`` values from 0 to 1.
        counts: Samples per bin.
        accuracy: Mean correctness per bin (0 where empty).
        confidence: Mean confidence per bin (0 where empty).
    """

    edges: Tensor
    counts: Tensor
    accuracy: Tensor
    confidence: Tensor

    @property
    def gaps(self) -> Tensor:
        """Absolute accuracy–confidence gap per bin."""
        return (self.accuracy - self.confidence).abs()


def _check_probs(probs: Tensor, labels: Tensor) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"expected probs (N, K) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}")


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Bin samples by top-label confidence into ``n_bins`` equal-width, right-closed bins.

    Args:
        probs: Class probabilities ``(N, K)``.
        labels: True classes ``(N,)``.
        n_bins: Number of bins.

    Returns:
        The bins' edges, counts, accuracies and confidences.

    Example:
        >>> probs = torch.tensor([[1.0, 0.0], [0.6, 0.4]])
        >>> bins = reliability_bins(probs, torch.tensor([0, 1]), n_bins=2)
        >>> bins.counts.tolist()
        [0, 2]
    """
    _check_probs(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    confidences, predictions = probs.max(dim=1)
    # Edges in the inputs' own precision, so a float32 confidence of 0.6 sits on the float32 edge 0.6.
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=confidences.dtype, device=probs.device)
    index = torch.bucketize(confidences, edges[1:-1], right=False)
    confidences, edges = confidences.double(), edges.double()
    correct = (predictions == labels).double()
    counts = torch.bincount(index, minlength=n_bins)
    safe = counts.clamp_min(1).double()
    accuracy = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).index_add_(0, index, correct) / safe
    confidence = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).index_add_(0, index, confidences) / safe
    return ReliabilityBins(edges=edges, counts=counts, accuracy=accuracy, confidence=confidence)


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """ECE: ``Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|`` over equal-width confidence bins.

    Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
        >>> round(expected_calibration_error(probs, torch.tensor([0, 1])), 4)
        0.4
    """
    bins = reliability_bins(probs, labels, n_bins)
    return float((bins.counts.double() / labels.shape[0] * bins.gaps).sum())


def maximum_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """MCE: the largest accuracy–confidence gap over non-empty bins.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
        >>> round(maximum_calibration_error(probs, torch.tensor([0, 1])), 4)
        0.4
    """
    bins = reliability_bins(probs, labels, n_bins)
    return float(bins.gaps[bins.counts > 0].max())


def brier_score(probs: Tensor, labels: Tensor) -> float:
    """Multi-class Brier score ``mean_n Σ_k (p_nk − y_nk)²`` (range 0–2).

    Example:
        >>> brier_score(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
        2.0
    """
    _check_probs(probs, labels)
    one_hot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return float(((probs - one_hot) ** 2).sum(dim=1).mean())


def negative_log_likelihood(logits: Tensor, labels: Tensor) -> float:
    """Mean ``−log p_y`` computed stably from logits.

    Example:
        >>> round(negative_log_likelihood(torch.zeros(1, 4), torch.tensor([2])), 4)
        1.3863
    """
    return float(F.cross_entropy(logits.double(), labels))


def adaptive_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Adaptive ECE: ECE over equal-mass bins of the top-label confidence.

    Samples are sorted by confidence (ties in a stable order) and cut into ``n_bins`` runs whose sizes
    differ by at most one, so every bin weighs about the same and sparse high-confidence regions are
    not merged away. Reference: Nixon et al., "Measuring Calibration in Deep Learning", CVPR-W 2019.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
        >>> round(adaptive_calibration_error(probs, torch.tensor([0, 0, 0, 1]), n_bins=2), 4)
        0.1
    """
    _check_probs(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    confidences, predictions = probs.double().max(dim=1)
    correct = (predictions == labels).double()
    order = torch.argsort(confidences, stable=True)
    total = 0.0
    for part in torch.tensor_split(order, min(n_bins, len(order))):
        total += len(part) * abs(float(correct[part].mean() - confidences[part].mean()))
    return total / len(order)


def classwise_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Classwise ECE: the mean over classes of the ECE of each class's own probability.

    For class ``k``, all samples are binned by ``p_k`` in equal-width right-closed bins and each bin's
    mean ``p_k`` is compared with the fraction of its samples whose label is ``k``. Reference: Kull et
    al., "Beyond temperature scaling", NeurIPS 2019.

    Example:
        >>> probs = torch.tensor([[0.8, 0.2], [0.8, 0.2]])
        >>> round(classwise_calibration_error(probs, torch.tensor([0, 1]), n_bins=10), 4)
        0.3
    """
    _check_probs(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    n, classes = probs.shape
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype, device=probs.device)
    index = torch.bucketize(probs, edges[1:-1], right=False)  # (N, K) bin of every class probability
    flat = (index + n_bins * torch.arange(classes, device=probs.device)).flatten()
    is_label = F.one_hot(labels, classes).double().flatten()
    hits = torch.zeros(n_bins * classes, dtype=torch.float64, device=probs.device).index_add_(0, flat, is_label)
    mass = torch.zeros_like(hits).index_add_(0, flat, probs.double().flatten())
    return float((hits - mass).abs().sum() / (n * classes))
