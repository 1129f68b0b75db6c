"""Self-contained HTML export: plots embedded as base64 PNG, each table downloadable as a CSV ``data:`` link."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from robustlit.reporting.csv_export import metrics_csv
from robustlit.reporting.sections import ReportContent

TEMPLATE = "report.html.j2"


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode("utf-8") if isinstance(data, str) else data).decode("ascii")


def render_html(content: ReportContent) -> str:
    """The report as one HTML page that needs no other file (images and CSVs are inline).

    Example:
        >>> html = render_html(build_content(load_runs(["runs/demo/baseline"])))  # doctest: +SKIP
    """
    import jinja2

    import robustlit

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    environment.filters["b64"] = _b64
    context: dict[str, Any] = {
        "content": content, "version": robustlit.__version__, "metrics_csv": _b64(metrics_csv(content)),
    }
    return environment.get_template(TEMPLATE).render(**context)


def write_html(content: ReportContent, path: str | os.PathLike[str]) -> Path:
    """Render :func:`render_html` into ``path`` and return it.

    Example:
        >>> write_html(content, "out/robustness_report.html")  # doctest: +SKIP
        PosixPath('out/robustness_report.html')
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(content), encoding="utf-8")
    return target
