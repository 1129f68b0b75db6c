"""Read and write ``robustness_report.json`` files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from robustlit.reporting.schema import Report, ReportError

REPORT_FILENAME = "robustness_report.json"


def write_report(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as indented JSON, atomically (a crash never leaves half a file).

    Args:
        report: The report.
        path: Target file, or a directory to write ``robustness_report.json`` into.

    Returns:
        The path written.

    Example:
        >>> write_report(report, "runs/demo")  # doctest: +SKIP
        PosixPath('runs/demo/robustness_report.json')
    """
    target = Path(path)
    if target.is_dir():
        target = target / REPORT_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(report.to_dict(), tmp, indent=2, allow_nan=False)
        tmp.write("\n")
    os.replace(tmp.name, target)
    return target


def read_report(path: str | os.PathLike[str]) -> Report:
    """Load and validate a report file (or the report inside a run directory).

    Raises:
        ReportError: If the file is missing, is not JSON, or does not follow the schema.

    Example:
        >>> read_report("runs/demo/robustness_report.json").metrics[0].key  # doctest: +SKIP
        'clean/accuracy'
    """
    source = Path(path)
    if source.is_dir():
        source = source / REPORT_FILENAME
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot read report {source}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportError(f"{source} is not valid JSON (line {error.lineno}: {error.msg})") from None
    try:
        return Report.from_dict(data)
    except ReportError as error:
        raise ReportError(f"{source}: {error}") from None
