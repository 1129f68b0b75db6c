"""OOD detection metrics: AUROC, AUPR-In, AUPR-Out and FPR at 95% TPR.

Convention: detector scores are **higher for in-distribution** inputs and **ID is the positive class**.
AUROC is the same under either convention. AUPR-In treats ID as positive (scores as they are), AUPR-Out
treats OOD as positive (scores negated). :func:`fpr_at_tpr` defaults to the ODIN / Energy / Mahalanobis
papers' FPR95: the fraction of OOD inputs accepted as ID at the threshold that keeps 95% of ID inputs.
``positive="ood"`` gives OpenOOD's variant: the fraction of ID inputs rejected when 95% of OOD inputs
are caught.

Every threshold is a distinct score value and an input counts as accepted when its score is at least
the threshold, as in ``sklearn.metrics.roc_curve``; tied scores are never split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

POSITIVES = ("id", "ood")


@dataclass(frozen=True)
class RocCurve:
    """Operating points of a detector, one per distinct threshold (plus the empty start point).

    Attributes:
        fpr: Fraction of OOD inputs accepted as ID, ascending.
        tpr: Fraction of ID inputs accepted as ID, ascending.
        thresholds: Score thresholds, descending (the first is ``inf``).
    """

    fpr: Tensor
    tpr: Tensor
    thresholds: Tensor


def _as_scores(values: Tensor | Sequence[float], name: str) -> Tensor:
    if not isinstance(values, Tensor):
        values = torch.tensor(values, dtype=torch.float64)
    scores = values.detach().to("cpu", torch.float64).flatten()
    if scores.numel() == 0:
        raise ValueError(f"{name} is empty; OOD metrics need at least one ID and one OOD score")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} holds NaN or infinite scores")
    return scores


def _cumulative_counts(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ID and OOD counts at or above each distinct score (descending), and those scores."""
    scores = torch.cat([id_scores, ood_scores])
    is_id = torch.cat([torch.ones_like(id_scores), torch.zeros_like(ood_scores)])
    order = torch.argsort(scores, descending=True, stable=True)
    scores, is_id = scores[order], is_id[order]
    last_of_group = torch.ones_like(scores, dtype=torch.bool)
    last_of_group[:-1] = scores[1:] != scores[:-1]
    true_pos = torch.cumsum(is_id, 0)[last_of_group]
    false_pos = torch.cumsum(1 - is_id, 0)[last_of_group]
    return true_pos, false_pos, scores[last_of_group]


def roc_curve(id_scores: Tensor | Sequence[float], ood_scores: Tensor | Sequence[float]) -> RocCurve:
    """ROC curve with ID as the positive class (accept as ID when ``score >= threshold``).

    Example:
        >>> curve = roc_curve([0.9, 0.8], [0.1, 0.85])
        >>> curve.tpr.tolist(), curve.fpr.tolist()
        ([0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    ids, oods = _as_scores(id_scores, "id_scores"), _as_scores(ood_scores, "ood_scores")
    true_pos, false_pos, thresholds = _cumulative_counts(ids, oods)
    zero = torch.zeros(1, dtype=torch.float64)
    return RocCurve(
        fpr=torch.cat([zero, false_pos / len(oods)]),
        tpr=torch.cat([zero, true_pos / len(ids)]),
        thresholds=torch.cat([torch.full((1,), float("inf"), dtype=torch.float64), thresholds]),
    )


def auroc(id_scores: Tensor | Sequence[float], ood_scores: Tensor | Sequence[float]) -> float:
    """Area under the ROC curve: the probability that an ID input outscores an OOD one (ties count 1/2).

    Computed from average ranks (Mann–Whitney U), so it equals ``sklearn.metrics.roc_auc_score``.

    Example:
        >>> auroc([0.9, 0.8], [0.1, 0.85])
        0.75
    """
    ids, oods = _as_scores(id_scores, "id_scores"), _as_scores(ood_scores, "ood_scores")
    scores = torch.cat([ids, oods])
    sorted_scores, order = torch.sort(scores, stable=True)
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    average_rank = ends - (counts.to(torch.float64) - 1) / 2  # 1-based mean rank of each tie group
    ranks = torch.empty_like(scores)
    ranks[order] = average_rank[inverse]
    n_id, n_ood = len(ids), len(oods)
    return float((ranks[:n_id].sum() - n_id * (n_id + 1) / 2) / (n_id * n_ood))


def _average_precision(pos_scores: Tensor, neg_scores: Tensor) -> float:
    true_pos, false_pos, _ = _cumulative_counts(pos_scores, neg_scores)
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / len(pos_scores)
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((steps * precision).sum())


def aupr_in(id_scores: Tensor | Sequence[float], ood_scores: Tensor | Sequence[float]) -> float:
    """Average precision with ID as the positive class (``sklearn.metrics.average_precision_score``).

    Example:
        >>> round(aupr_in([0.9, 0.8], [0.1, 0.85]), 4)
        0.8333
    """
    return _average_precision(_as_scores(id_scores, "id_scores"), _as_scores(ood_scores, "ood_scores"))


def aupr_out(id_scores: Tensor | Sequence[float], ood_scores: Tensor | Sequence[float]) -> float:
    """Average precision with OOD as the positive class, ranking by the negated score.

    Example:
        >>> round(aupr_out([0.9, 0.8], [0.1, 0.85]), 4)
        0.8333
    """
    return _average_precision(-_as_scores(ood_scores, "ood_scores"), -_as_scores(id_scores, "id_scores"))


def fpr_at_tpr(
    id_scores: Tensor | Sequence[float],
    ood_scores: Tensor | Sequence[float],
    tpr: float = 0.95,
    positive: str = "id",
) -> float:
    """False-positive rate at the highest threshold whose true-positive rate reaches ``tpr``.

    Args:
        id_scores: Detector scores of ID inputs (higher = more in-distribution).
        ood_scores: Detector scores of OOD inputs.
        tpr: Target true-positive rate in (0, 1].
        positive: ``"id"`` (default): the fraction of OOD inputs scored at or above the threshold that
            accepts ``tpr`` of the ID inputs. ``"ood"``: the fraction of ID inputs scored at or below the
            threshold that rejects ``tpr`` of the OOD inputs (OpenOOD's convention).

    Example:
        >>> fpr_at_tpr([4, 3, 2, 1], [3.5, 0], tpr=0.75)
        0.5
        >>> fpr_at_tpr([4, 3, 2, 1], [3.5, 0], tpr=1.0, positive="ood")
        0.75
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    if positive not in POSITIVES:
        raise ValueError(f"positive={positive!r}; choose one of {', '.join(POSITIVES)}")
    ids, oods = _as_scores(id_scores, "id_scores"), _as_scores(ood_scores, "ood_scores")
    if positive == "ood":
        ids, oods = -oods, -ids
    true_pos, false_pos, _ = _cumulative_counts(ids, oods)
    reached = torch.nonzero(true_pos / len(ids) >= tpr - 1e-12)[0, 0]
    return float(false_pos[reached] / len(oods))


def ood_metrics(id_scores: Tensor | Sequence[float], ood_scores: Tensor | Sequence[float]) -> dict[str, float]:
    """``auroc``, ``aupr_in``, ``aupr_out`` and ``fpr95`` (ID positive) in one dict.

    Example:
        >>> ood_metrics([0.9, 0.8], [0.1, 0.85])["auroc"]
        0.75
    """
    return {
        "auroc": auroc(id_scores, ood_scores),
        "aupr_in": aupr_in(id_scores, ood_scores),
        "aupr_out": aupr_out(id_scores, ood_scores),
        "fpr95": fpr_at_tpr(id_scores, ood_scores, 0.95),
    }
