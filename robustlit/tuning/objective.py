"""The tuning objective: a weighted sum of report metrics, plus constraint violations."""

from __future__ import annotations

import math
from typing import Any

from robustlit.errors import ConfigError
from robustlit.reporting import Metric, Report
from robustlit.tuning.space import Constraint, Term, TuneSpec


def select(report: Report, metric: str, context: dict[str, Any]) -> float:
    """The value of the one metric ``suite/name`` whose context contains ``context`` (numbers within 1e-6).

    Raises:
        ConfigError: If no metric or more than one matches; the message lists the contexts on offer.

    Example:
        >>> from robustlit.reporting import DataInfo, ModelInfo, RunInfo
        >>> run = RunInfo("r", "n", "train", 0, "t0", "t1", {}, None, "0")
        >>> report = Report(run, ModelInfo("m", 1), DataInfo("d", 1, "f"), [Metric("clean", "accuracy", 0.9)])
        >>> select(report, "clean/accuracy", {})
        0.9
    """
    suite, name = metric.split("/", 1)
    candidates = [m for m in report.metrics if m.suite == suite and m.name == name]
    matches = [m for m in candidates if all(_same(m.context.get(k), v) for k, v in context.items())]
    if len(matches) == 1:
        return float(matches[0].value)
    offered = "; ".join(_describe(m) for m in candidates) or "none"
    problem = "no" if not matches else f"{len(matches)}"
    raise ConfigError(f"{problem} report metrics {metric} match context {context}; add or fix context keys "
                      f"(available contexts: {offered})")


def evaluate(report: Report, spec: TuneSpec) -> tuple[float, list[float], dict[str, float]]:
    """The objective ``sum(weight * metric)``, the constraint violations (``<= 0`` is feasible) and the parts.

    Example:
        >>> from robustlit.reporting import DataInfo, ModelInfo, RunInfo
        >>> run = RunInfo("r", "n", "train", 0, "t0", "t1", {}, None, "0")
        >>> report = Report(run, ModelInfo("m", 1), DataInfo("d", 1, "f"), [Metric("clean", "accuracy", 0.9),
        ...     Metric("adversarial", "robust_accuracy", 0.4, {"attack": "pgd", "eps": 0.0313725})])
        >>> spec = TuneSpec.from_dict({"study": "s", "params": {"optimizer.lr": {"low": 0.01, "high": 0.1}},
        ...     "objective": {"terms": [{"metric": "clean/accuracy", "weight": 0.5},
        ...                             {"metric": "adversarial/robust_accuracy", "context": {"eps": "8/255"}}],
        ...                   "constraints": [{"metric": "clean/accuracy", "min": 0.95}]}})
        >>> value, violations, parts = evaluate(report, spec)
        >>> round(value, 6), violations
        (0.85, [0.05])
    """
    parts = {_label(term): select(report, term.metric, term.context) for term in spec.terms}
    value = sum(term.weight * parts[_label(term)] for term in spec.terms)
    violations = [constraint.violation(select(report, constraint.metric, constraint.context))
                  for constraint in spec.constraints]
    return value, violations, parts


def _label(item: Term | Constraint) -> str:
    context = ",".join(f"{k}={v}" for k, v in item.context.items())
    return f"{item.metric}[{context}]" if context else item.metric


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, int | float) and isinstance(wanted, int | float):
        return math.isclose(float(actual), float(wanted), abs_tol=1e-6)
    return actual == wanted


def _describe(metric: Metric) -> str:
    return ",".join(f"{k}={v}" for k, v in metric.context.items()) or "{}"
