"""Export run reports to HTML, PDF, CSV and JSON in one call (what ``robustlit report`` runs)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from robustlit.errors import ConfigError
from robustlit.reporting.csv_export import write_csv
from robustlit.reporting.html import write_html
from robustlit.reporting.json import REPORT_FILENAME
from robustlit.reporting.pdf import write_pdf
from robustlit.reporting.sections import ReportContent, build_content, load_runs

FORMATS = ("html", "pdf", "json", "csv")
BASENAME = "robustness_report"


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """Formats from ``"html,pdf"`` (or a list), checked against :data:`FORMATS`, duplicates dropped.

    Raises:
        ConfigError: On an unknown or empty format.

    Example:
        >>> parse_formats("html, pdf,html")
        ['html', 'pdf']
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = list(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
    unknown = [item for item in formats if item not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format {','.join(unknown) or repr(text)} is not supported; choose from "
                          f"{','.join(FORMATS)} (comma-separated)")
    return formats


def write_exports(content: ReportContent, formats: Sequence[str], output: str | os.PathLike[str]) -> list[Path]:
    """Write ``content`` in each format into ``output``.

    Files: ``robustness_report.html``, ``robustness_report.pdf``, ``csv/<table>.csv`` (plus ``csv/metrics.csv``)
    and ``json/<run label>.json`` (each run's report file, copied as it is).

    Returns:
        Every path written.

    Example:
        >>> write_exports(content, ["html", "pdf"], "out")  # doctest: +SKIP
        [PosixPath('out/robustness_report.html'), PosixPath('out/robustness_report.pdf')]
    """
    target = Path(output)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for kind in parse_formats(formats):
        if kind == "html":
            written.append(write_html(content, target / f"{BASENAME}.html"))
        elif kind == "pdf":
            written.append(write_pdf(content, target / f"{BASENAME}.pdf"))
        elif kind == "csv":
            written += write_csv(content, target / "csv")
        else:
            folder = target / "json"
            folder.mkdir(exist_ok=True)
            for run in content.runs:
                path = folder / f"{run.label}.json"
                original = run.directory / REPORT_FILENAME if run.directory is not None else None
                if original is not None and original.is_file():
                    shutil.copyfile(original, path)  # the report itself, byte for byte
                else:
                    path.write_text(json.dumps(run.report.to_dict(), indent=2, allow_nan=False) + "\n",
                                    encoding="utf-8")
                written.append(path)
    return written


def export_reports(runs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str],
                   formats: str | Sequence[str] = ("html", "pdf"), baseline: str | os.PathLike[str] | None = None,
                   title: str | None = None) -> list[Path]:
    """Read run folders (or report files), build the report content and write it in ``formats``.

    Args:
        runs: Run folders or ``robustness_report.json`` files.
        output: Folder for the exports.
        formats: Any of :data:`FORMATS`, as a list or a comma-separated string.
        baseline: Run the Δ columns compare against; shown first.
        title: Report title.

    Raises:
        ConfigError: On an unknown format or when neither runs nor a baseline are given.
        ReportError: When a path holds no valid report.

    Example:
        >>> export_reports(["runs/demo/pgd_at_ls"], "out", "html,pdf", baseline="runs/demo/baseline")
        ... # doctest: +SKIP
    """
    kinds = parse_formats(formats)
    if not runs and baseline is None:
        raise ConfigError("robustlit report needs at least one RUN_DIR")
    base = load_runs([baseline])[0] if baseline is not None else None
    content = build_content(load_runs(runs), base, title=title)
    return write_exports(content, kinds, output)
