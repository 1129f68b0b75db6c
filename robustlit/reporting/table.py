"""Terminal tables of one report, or of several side by side with deltas against the first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from robustlit.reporting.schema import Metric, Report


def _format_context_value(key: str, value: Any) -> str:
    if key == "eps" and isinstance(value, int | float) and value > 0:
        in_255ths = value * 255
        if abs(in_255ths - round(in_255ths)) < 1e-3:
            return f"{round(in_255ths)}/255"
        return f"{value:.4g}"
    return str(value)


def metric_label(metric: Metric) -> str:
    """Human-readable name of a metric with its context.

    Example:
        >>> metric_label(Metric("adversarial", "robust_accuracy", 0.4, {"attack": "pgd", "norm": "Linf", "eps": 8/255}))
        'adversarial/robust_accuracy pgd Linf eps=8/255'
    """
    parts = [metric.key]
    for key, value in metric.context.items():
        text = _format_context_value(key, value)
        parts.append(text if key in ("attack", "norm", "detector", "corruption") else f"{key}={text}")
    return " ".join(parts)


def comparison_rows(reports: Sequence[Report]) -> list[tuple[str, list[float | None]]]:
    """Align the metrics of several reports by label, in first-seen order.

    Returns:
        ``(label, values)`` pairs; ``values[i]`` is ``None`` where report ``i`` lacks the metric.

    Example:
        >>> comparison_rows([])
        []
    """
    rows: dict[str, list[float | None]] = {}
    for index, report in enumerate(reports):
        for metric in report.metrics:
            values = rows.setdefault(metric_label(metric), [None] * len(reports))
            values[index] = metric.value
    return list(rows.items())


def print_report(report: Report, console: Console | None = None) -> None:
    """Print one report's metrics as a table.

    Example:
        >>> print_report(read_report("runs/demo/baseline"))  # doctest: +SKIP
    """
    table = Table(title=f"{report.run.name} ({report.run.type}) on {report.data.name}, n={report.data.n_test}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for metric in report.metrics:
        table.add_row(metric_label(metric), f"{metric.value:.4f}")
    (console or Console()).print(table)


def print_comparison(reports: Sequence[Report], names: Sequence[str] | None = None,
                     console: Console | None = None) -> None:
    """Print several reports side by side, with each column's delta against the first.

    Args:
        reports: Reports to compare; the first is the baseline.
        names: Column titles; defaults to the run names.
        console: Where to print; a new stdout console by default.

    Example:
        >>> print_comparison([baseline, robust], names=["baseline", "pgd_at"])  # doctest: +SKIP
    """
    names = list(names or [report.run.name for report in reports])
    table = Table(title="robustness comparison (Δ against " + names[0] + ")")
    table.add_column("metric")
    for index, name in enumerate(names):
        table.add_column(name, justify="right")
        if index:
            table.add_column("Δ", justify="right")
    for label, values in comparison_rows(reports):
        cells = [label]
        for index, value in enumerate(values):
            cells.append("—" if value is None else f"{value:.4f}")
            if index:
                base = values[0]
                cells.append("—" if value is None or base is None else f"{value - base:+.4f}")
        table.add_row(*cells)
    (console or Console()).print(table)
