"""CSV export: one file per report table, plus every metric row of every run in long format."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from robustlit.reporting.sections import ReportContent

METRICS_CSV = "metrics.csv"


def metrics_csv(content: ReportContent) -> str:
    """Every metric of every run as CSV: ``run, suite, name, value, context`` (context as JSON).

    Example:
        >>> metrics_csv(content).splitlines()[0]  # doctest: +SKIP
        'run,suite,name,value,context'
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run", "suite", "name", "value", "context"])
    for run in content.runs:
        for metric in run.report.metrics:
            writer.writerow([run.label, metric.suite, metric.name, metric.value,
                             json.dumps(metric.context, sort_keys=True)])
    return buffer.getvalue()


def write_csv(content: ReportContent, directory: str | os.PathLike[str]) -> list[Path]:
    """Write each table as ``<table>.csv`` and all metrics as ``metrics.csv`` into ``directory``.

    Returns:
        The paths written, tables first.

    Example:
        >>> [p.name for p in write_csv(content, "out/csv")][:2]  # doctest: +SKIP
        ['summary_kpis.csv', 'adversarial_robust_accuracy.csv']
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for table in content.tables:
        path = target / table.filename
        path.write_text(table.csv(), encoding="utf-8", newline="")
        written.append(path)
    path = target / METRICS_CSV
    path.write_text(metrics_csv(content), encoding="utf-8", newline="")
    return [*written, path]
