"""One certificate type for every method: per-sample predictions and certified radii, with their guarantee."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

ABSTAIN = -1
"""Prediction of a sample the certifier declined to classify (counts as wrong)."""

DETERMINISTIC = "deterministic"


def probabilistic(alpha: float) -> str:
    """The guarantee label of a certificate that holds with probability at least ``1 − alpha``.

    Example:
        >>> probabilistic(0.001)
        'probabilistic(0.001)'
    """
    return f"probabilistic({alpha:g})"


@dataclass(frozen=True)
class CertifiedResult:
    """Certified predictions of a batch, one certificate type for every method.

    Sample ``i`` is classified ``prediction[i]`` everywhere in the ``norm``-ball of radius ``radius[i]``
    around it.
    A ``"deterministic"`` guarantee (IBP, CROWN-IBP, Lipschitz margins) holds for certain; a
    ``"probabilistic(α)"`` one (randomized smoothing) holds for each sample with probability at least
    ``1 − α`` over the certifier's noise. A sample counts as certified at radius ``r`` when it is
    predicted correctly (not abstained) and ``radius ≥ r``; abstentions have radius 0.

    Attributes:
        method: ``"smoothing"``, ``"ibp"``, ``"crown-ibp"``, ``"crown"`` or ``"lipschitz"``.
        norm: ``"L2"`` or ``"Linf"``.
        guarantee: ``"deterministic"`` or ``"probabilistic(α)"``.
        prediction: ``(N,)`` class indices, :data:`ABSTAIN` where the certifier abstained.
        radius: ``(N,)`` certified radii (float64).

    Example:
        >>> result = CertifiedResult("smoothing", "L2", probabilistic(0.001),
        ...                          torch.tensor([0, 1, ABSTAIN]), torch.tensor([0.3, 0.6, 0.0]))
        >>> result.certified_accuracy(torch.tensor([0, 1, 2]), [0.0, 0.5])
        [0.6666666666666666, 0.3333333333333333]
        >>> result.abstain_rate
        0.3333333333333333
    """

    method: str
    norm: str
    guarantee: str
    prediction: Tensor
    radius: Tensor

    def __post_init__(self) -> None:
        if self.prediction.shape != self.radius.shape or self.prediction.ndim != 1:
            raise ValueError(
                f"CertifiedResult needs (N,) predictions and radii, got {tuple(self.prediction.shape)} "
                f"and {tuple(self.radius.shape)}"
            )

    def certified(self, labels: Tensor, radius: float) -> Tensor:
        """Which samples are correctly classified and certified at ``radius`` (``(N,)`` bools)."""
        return (self.prediction.cpu() == labels.cpu()) & (self.radius.cpu() >= radius)

    def certified_accuracy(self, labels: Tensor, radii: Sequence[float]) -> list[float]:
        """Fraction certified at each radius; abstentions and errors count as not certified."""
        total = max(int(labels.shape[0]), 1)
        return [int(self.certified(labels, r).sum()) / total for r in radii]

    @property
    def abstain_rate(self) -> float:
        """Fraction of samples the certifier abstained on."""
        return float((self.prediction == ABSTAIN).double().mean()) if self.prediction.numel() else 0.0

    def correct_radius(self, labels: Tensor) -> Tensor:
        """Certified radius of correct predictions, 0 for errors and abstentions."""
        correct = self.prediction.cpu() == labels.cpu()
        return torch.where(correct, self.radius.cpu().double(), torch.zeros((), dtype=torch.float64))

    def median_radius(self, labels: Tensor) -> float:
        """Median of :meth:`correct_radius` over the samples (the lower median for an even count)."""
        return float(self.correct_radius(labels).median()) if labels.numel() else 0.0
