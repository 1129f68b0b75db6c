"""Reports: the ``robustness_report.json`` schema, file I/O and tables (no torch imports)."""

from robustlit.reporting.json import REPORT_FILENAME, read_report, write_report
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
    "comparison_rows",
    "metric_label",
    "print_comparison",
    "print_report",
    "read_report",
    "write_report",
]
