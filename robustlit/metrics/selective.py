"""Selective prediction: risk–coverage curve, AURC, E-AURC and the coverage at a target risk.

A selective classifier answers only the inputs whose confidence is high enough. Ranking the ``N`` inputs by
decreasing confidence, the risk at coverage ``k/N`` is the error rate among the ``k`` most confident ones.
Inputs with tied confidence cannot be told apart, so within a tie group the risk is the expected one for a
random order of the group: errors before the group plus ``j`` times the group's error rate, over ``k``.
AURC is the mean risk over ``k = 1 … N`` (Geifman et al., "Bias-Reduced Uncertainty Estimation for Deep
Neural Classifiers", ICLR 2019). E-AURC subtracts the AURC of the best possible ranking of the same
predictions, every correct one before every error, so ``E-AURC >= 0`` with equality for a perfect ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RiskCoverage:
    """A risk–coverage curve.

    Attributes:
        coverage: ``k/N`` for ``k = 1 … N``.
        risk: Error rate among the ``k`` most confident inputs (expected over orders of tied inputs).
    """

    coverage: Tensor
    risk: Tensor


@dataclass(frozen=True)
class SelectiveThreshold:
    """The loosest confidence threshold whose accepted inputs meet a target risk.

    Attributes:
        threshold: Accept inputs with confidence ``>= threshold`` (``inf`` when no threshold meets the risk).
        coverage: Fraction of inputs accepted.
        risk: Error rate among the accepted inputs (0 when none is accepted).
    """

    threshold: float
    coverage: float
    risk: float


def _check(confidence: Tensor | Sequence[float], correct: Tensor | Sequence[bool]) -> tuple[Tensor, Tensor]:
    if not isinstance(confidence, Tensor):
        confidence = torch.tensor(confidence, dtype=torch.float64)
    confidence = confidence.detach().to("cpu", torch.float64).flatten()
    correct = torch.as_tensor(correct).detach().to("cpu").flatten()
    if confidence.shape != correct.shape or confidence.numel() == 0:
        raise ValueError(
            f"expected as many confidences as correctness flags (at least one), got {confidence.numel()} "
            f"and {correct.numel()}"
        )
    if not bool(torch.isfinite(confidence).all()):
        raise ValueError("confidence holds NaN or infinite values")
    return confidence, correct.to(torch.float64)


def _tie_groups(confidence: Tensor, errors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct confidences (descending) with the count and the error count of each group."""
    order = torch.argsort(confidence, descending=True, stable=True)
    values, counts = torch.unique_consecutive(confidence[order], return_counts=True)
    group = torch.repeat_interleave(torch.arange(len(counts)), counts)
    group_errors = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, group, errors[order])
    return values, counts, group_errors


def risk_coverage_curve(confidence: Tensor | Sequence[float], correct: Tensor | Sequence[bool]) -> RiskCoverage:
    """Risk at every coverage ``k/N``, ranking inputs by decreasing confidence.

    Args:
        confidence: One confidence per input (e.g. the maximum softmax probability).
        correct: Whether each prediction is right.

    Example:
        >>> curve = risk_coverage_curve([0.9, 0.8, 0.7, 0.6], [True, False, True, True])
        >>> [round(r, 3) for r in curve.risk.tolist()]
        [0.0, 0.5, 0.333, 0.25]
    """
    confidence, correct = _check(confidence, correct)
    _, counts, group_errors = _tie_groups(confidence, 1 - correct)
    group = torch.repeat_interleave(torch.arange(len(counts)), counts)
    errors_before = torch.cumsum(group_errors, 0) - group_errors
    seen_before = torch.cumsum(counts, 0) - counts
    k = torch.arange(1, len(confidence) + 1, dtype=torch.float64)
    within = k - seen_before[group]
    expected_errors = errors_before[group] + within * group_errors[group] / counts[group]
    return RiskCoverage(coverage=k / len(confidence), risk=expected_errors / k)


def aurc(confidence: Tensor | Sequence[float], correct: Tensor | Sequence[bool]) -> float:
    """Area under the risk–coverage curve: the mean risk over coverages ``1/N … 1``.

    Example:
        >>> round(aurc([0.9, 0.8, 0.7, 0.6], [True, False, True, True]), 4)
        0.2708
    """
    return float(risk_coverage_curve(confidence, correct).risk.mean())


def optimal_aurc(correct: Tensor | Sequence[bool]) -> float:
    """AURC of the best ranking: every correct prediction before every error.

    With error rate ``r`` this tends to ``r + (1 − r)·ln(1 − r)`` as ``N`` grows.

    Example:
        >>> round(optimal_aurc([True, True, False, False]), 4)
        0.2083
    """
    correct = torch.as_tensor(correct).flatten().to(torch.float64)
    n, n_correct = len(correct), float(correct.sum())
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((k - n_correct).clamp_min(0) / k).mean())


def excess_aurc(confidence: Tensor | Sequence[float], correct: Tensor | Sequence[bool]) -> float:
    """E-AURC: AURC minus the AURC of the best ranking of the same predictions (0 for a perfect ranking).

    Example:
        >>> excess_aurc([0.9, 0.8, 0.7], [True, True, False])
        0.0
    """
    _, flags = _check(confidence, correct)
    return max(0.0, aurc(confidence, correct) - optimal_aurc(flags))


def coverage_at_risk(
    confidence: Tensor | Sequence[float], correct: Tensor | Sequence[bool], target_risk: float
) -> SelectiveThreshold:
    """The lowest confidence threshold whose accepted inputs have risk ``<= target_risk``.

    Thresholds are the distinct confidences; an input is accepted when its confidence is at least the
    threshold, so tied inputs are accepted or rejected together.

    Args:
        confidence: One confidence per input.
        correct: Whether each prediction is right.
        target_risk: Highest acceptable error rate among accepted inputs, in [0, 1].

    Example:
        >>> chosen = coverage_at_risk([0.9, 0.8, 0.7, 0.6], [True, False, True, True], target_risk=0.3)
        >>> chosen.threshold, chosen.coverage, chosen.risk
        (0.6, 1.0, 0.25)
    """
    if not 0 <= target_risk <= 1:
        raise ValueError(f"target_risk must be in [0, 1], got {target_risk}")
    confidence, correct = _check(confidence, correct)
    values, counts, group_errors = _tie_groups(confidence, 1 - correct)
    accepted = torch.cumsum(counts, 0).to(torch.float64)
    risk = torch.cumsum(group_errors, 0) / accepted
    meets = torch.nonzero(risk <= target_risk + 1e-12).flatten()
    if len(meets) == 0:
        return SelectiveThreshold(threshold=float("inf"), coverage=0.0, risk=0.0)
    last = int(meets[-1])
    return SelectiveThreshold(
        threshold=float(values[last]), coverage=float(accepted[last] / len(confidence)), risk=float(risk[last])
    )
