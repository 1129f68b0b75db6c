"""Reports: the ``robustness_report.json`` schema, file I/O and tables (no torch imports)."""

from robustlit.reporting.compare import kpis, regressions
from robustlit.reporting.export import export_reports
from robustlit.reporting.json import REPORT_FILENAME, read_report, write_report
from robustlit.reporting.plots import plot_report
from robustlit.reporting.schema import (
    SCHEMA_VERSION,
    Artifact,
    DataInfo,
    Finding,
    Metric,
    ModelInfo,
    Report,
    ReportError,
    RunInfo,
)
from robustlit.reporting.sections import build_content, load_runs
from robustlit.reporting.table import comparison_rows, metric_label, print_comparison, print_report

__all__ = [
    "REPORT_FILENAME",
    "SCHEMA_VERSION",
    "Artifact",
    "DataInfo",
    "Finding",
    "Metric",
    "ModelInfo",
    "Report",
    "ReportError",
    "RunInfo",
    "build_content",
    "comparison_rows",
    "export_reports",
    "kpis",
    "load_runs",
    "metric_label",
    "print_comparison",
    "plot_report",
    "print_report",
    "read_report",
    "regressions",
    "write_report",
]
