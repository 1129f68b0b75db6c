"""Headline numbers of a run (KPIs) and regressions against a baseline run."""

from __future__ import annotations

from dataclasses import dataclass

from robustlit.reporting.plots import format_eps
from robustlit.reporting.schema import Metric, Report

REGRESSION_THRESHOLD = 0.05
"""A robust accuracy more than this far below the baseline's (5 percentage points; accuracies are fractions)."""

LOWER_IS_BETTER = frozenset({
    "error", "mean_error", "mce", "relative_mce", "ece", "adaptive_ece", "classwise_ece", "nll", "brier", "fpr95",
    "aurc", "e_aurc", "abstain_rate",
})
"""Metric names where a smaller value is the better one."""


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better.

    Example:
        >>> higher_is_better("robust_accuracy"), higher_is_better("ece")
        (True, False)
    """
    return name not in LOWER_IS_BETTER


@dataclass
class Kpi:
    """One headline number: ``label`` (unique per meaning), its value and the metric it reads.

    Example:
        >>> Kpi("Clean accuracy", 0.98, "accuracy").higher_is_better
        True
    """

    label: str
    value: float
    metric: str

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value is better."""
        return higher_is_better(self.metric)


def headline_robust_accuracy(report: Report) -> tuple[str, float] | None:
    """The worst robust accuracy over attacks at the largest ε of the main norm (L∞ when present).

    Returns:
        ``(label, value)``, or ``None`` without ``adversarial/robust_accuracy`` rows.

    Example:
        >>> headline_robust_accuracy(report)  # doctest: +SKIP
        ('Robust accuracy (Linf, ε=8/255)', 0.31)
    """
    rows = report.find("adversarial", "robust_accuracy")
    if not rows:
        return None
    norms = [str(m.context.get("norm")) for m in rows]
    norm = "Linf" if "Linf" in norms else norms[0]
    eps = max(float(m.context["eps"]) for m in rows if str(m.context.get("norm")) == norm)
    value = min(m.value for m in rows if str(m.context.get("norm")) == norm and float(m.context["eps"]) == eps)
    return f"Robust accuracy ({norm}, ε={format_eps(norm, eps)})", value


def _first(report: Report, suite: str, name: str, **context: object) -> Metric | None:
    rows = report.find(suite, name, **context)
    return rows[0] if rows else None


def kpis(report: Report) -> list[Kpi]:
    """The report's headline numbers, the ones a summary and the dashboard's Overview show.

    Clean accuracy; robust accuracy (see :func:`headline_robust_accuracy`); mean corruption error (mCE when
    present); in-domain ECE; the best detector's mean OOD AUROC; worst-group accuracy; each certification
    method's median radius; AURC.

    Example:
        >>> [k.label for k in kpis(report)]  # doctest: +SKIP
        ['Clean accuracy', 'Robust accuracy (Linf, ε=8/255)', 'ECE (in-domain)']
    """
    found: list[Kpi] = []
    if clean := _first(report, "clean", "accuracy"):
        found.append(Kpi("Clean accuracy", clean.value, "accuracy"))
    if robust := headline_robust_accuracy(report):
        found.append(Kpi(robust[0], robust[1], "robust_accuracy"))
    if mce := _first(report, "corruption", "mce"):
        found.append(Kpi("Mean corruption error (mCE)", mce.value, "mce"))
    elif errors := report.find("corruption", "error"):
        found.append(Kpi("Mean corruption error", sum(m.value for m in errors) / len(errors), "mean_error"))
    ece = [m for m in report.find("calibration", "ece") if m.context.get("split", "in_domain") == "in_domain"]
    if ece:
        found.append(Kpi("ECE (in-domain)", ece[0].value, "ece"))
    auroc = report.find("ood", "auroc", ood_set="mean") or report.find("ood", "auroc")
    if auroc:
        best = max(auroc, key=lambda m: m.value)
        found.append(Kpi(f"OOD AUROC ({best.context.get('detector', '?')})", best.value, "auroc"))
    if worst := _first(report, "groups", "worst_group_accuracy"):
        found.append(Kpi("Worst-group accuracy", worst.value, "worst_group_accuracy"))
    for median in report.find("certified", "median_radius"):
        method = " ".join(str(median.context[k]) for k in ("method", "norm") if k in median.context)
        found.append(Kpi(f"Median certified radius ({method})", median.value, "median_radius"))
    if aurc := _first(report, "selective", "aurc"):
        found.append(Kpi("AURC (selective risk)", aurc.value, "aurc"))
    return found


@dataclass
class Regression:
    """A robust accuracy that fell more than the threshold below the baseline's at the same attack and ε.

    Example:
        >>> Regression("pgd Linf eps=8/255", 0.40, 0.30).delta
        -0.1
    """

    label: str
    baseline: float
    value: float

    @property
    def delta(self) -> float:
        """``value - baseline`` (negative)."""
        return round(self.value - self.baseline, 10)


def regressions(report: Report, baseline: Report, threshold: float = REGRESSION_THRESHOLD) -> list[Regression]:
    """Robust accuracies of ``report`` more than ``threshold`` below ``baseline``'s under an identical context.

    Args:
        report: The candidate run.
        baseline: The reference run.
        threshold: Allowed drop, as a fraction (0.05 = 5 percentage points).

    Example:
        >>> regressions(candidate, baseline)  # doctest: +SKIP
        [Regression(label='pgd Linf eps=8/255', baseline=0.4, value=0.3)]
    """
    if threshold < 0:
        raise ValueError(f"regression threshold must be non-negative, got {threshold}")
    reference = {_context_key(m): m.value for m in baseline.find("adversarial", "robust_accuracy")}
    found = []
    for metric in report.find("adversarial", "robust_accuracy"):
        base = reference.get(_context_key(metric))
        if base is not None and metric.value < base - threshold:
            found.append(Regression(_context_label(metric), base, metric.value))
    return found


def _context_key(metric: Metric) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, repr(value)) for key, value in metric.context.items()))


def _context_label(metric: Metric) -> str:
    context = dict(metric.context)
    parts = [str(context.pop("attack", "")), str(context.get("norm", ""))]
    eps = context.pop("eps", None)
    if eps is not None:
        parts.append(f"ε={format_eps(str(context.get('norm')), float(eps))}")
    context.pop("norm", None)
    parts += [f"{key}={value}" for key, value in context.items()]
    return " ".join(part for part in parts if part)
