"""Streamlit building blocks shared by the pages: the data source, accessible tables and charts, run pickers.

Accessibility rules kept here so every page follows them: each chart is a PNG with alt text, each table is an
HTML table (readable by screen readers, unlike a canvas grid) with a CSV download button, Δ cells are shaded
blue (better) or orange (worse) *and* carry ▲/▼, and every control is a native, keyboard-usable widget.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import streamlit as st

from robustlit.reporting.compare import higher_is_better
from robustlit.reporting.plots import Chart
from robustlit.reporting.sections import RunSource, Table, format_delta
from robustlit_dashboard.sources import (
    ACTIVE,
    ENV_API,
    ENV_API_KEY,
    ENV_RUNS,
    DataSource,
    RunRef,
    SourceError,
    source_from_env,
)

LOG_LINES = 200
REFRESH_SECONDS = 2.0
BETTER_CSS = "background-color: #cfe6f5"
WORSE_CSS = "background-color: #f9d9c0"


@st.cache_resource(show_spinner=False)
def _source(api: str | None, key: str | None, runs: str | None) -> DataSource:
    environ = {name: value for name, value in ((ENV_API, api), (ENV_API_KEY, key), (ENV_RUNS, runs)) if value}
    return source_from_env(environ)


def source() -> DataSource:
    """The data source from the environment ``robustlit dashboard`` set; stops the page with the reason on error.

    Example:
        >>> source().kind  # doctest: +SKIP
        'folder'
    """
    try:
        data_source = _source(os.environ.get(ENV_API), os.environ.get(ENV_API_KEY), os.environ.get(ENV_RUNS))
    except SourceError as error:
        st.error(str(error))
        st.stop()
    st.sidebar.caption(f"Reading from the {data_source.description}.")
    return data_source


def require_api(data_source: DataSource, page: str) -> None:
    """Explain and stop when a page that needs the service runs on a folder.

    Example:
        >>> require_api(source(), "Launcher")  # doctest: +SKIP
    """
    if not data_source.has_api:
        st.info(f"The {page} page needs the robustlit service: it is reading a runs folder now. Start the service "
                "with `robustlit serve`, then restart the dashboard with "
                "`robustlit dashboard --api http://127.0.0.1:8000 --api-key KEY`.")
        st.stop()


def list_runs(data_source: DataSource, limit: int = 200) -> list[RunRef]:
    """Runs of the source, stopping the page with a message when it has none or cannot be read.

    Example:
        >>> [run.name for run in list_runs(source())]  # doctest: +SKIP
        ['pgd_at_ls', 'baseline']
    """
    try:
        runs, _ = data_source.runs(limit=limit)
    except SourceError as error:
        st.error(str(error))
        st.stop()
    if not runs:
        st.warning("No runs yet. Run `robustlit demo --output runs/demo` and point the dashboard at `--runs runs`.")
        st.stop()
    return runs


def run_label(run: RunRef) -> str:
    """How a run is shown in pickers: ``name · status · id``.

    Example:
        >>> run_label(RunRef("demo/baseline", "baseline", "succeeded"))
        'baseline · succeeded · demo/baseline'
    """
    return f"{run.name} · {run.status} · {run.id}"


def default_baseline(labels: Sequence[str]) -> int:
    """Index of the label that names a baseline, else of the last (oldest) one.

    Example:
        >>> default_baseline(["pgd_at", "baseline", "mixup"]), default_baseline(["new", "old"])
        (1, 1)
    """
    return next((index for index, label in enumerate(labels) if "baseline" in label.lower()), len(labels) - 1)


def load_sources(data_source: DataSource, runs: Sequence[RunRef]) -> dict[str, RunSource]:
    """The runs that have a report, by run id, as export sources labelled by run name (made unique).

    Example:
        >>> list(load_sources(source(), list_runs(source())))  # doctest: +SKIP
        ['demo/pgd_at_ls', 'demo/baseline']
    """
    from robustlit.reporting.sections import unique_label

    loaded: dict[str, RunSource] = {}
    for run in runs:
        try:
            found = data_source.run_source(run.id, run.name)
        except SourceError as error:
            st.warning(str(error))
            continue
        if found is not None:
            found.label = unique_label(found.label, [item.label for item in loaded.values()])
            loaded[run.id] = found
    return loaded


def _display(table: Table) -> tuple[Any, Any]:
    """The table's cells as shown and a matching grid of CSS for the Δ shading."""
    import pandas as pd

    cells = [[table.text(r, c) for c in range(len(row))] for r, row in enumerate(table.rows)]
    styles = [[BETTER_CSS if table.verdict(r, c) == "better" else WORSE_CSS if table.verdict(r, c) == "worse" else ""
               for c in range(len(row))] for r, row in enumerate(table.rows)]
    frame = pd.DataFrame(cells, columns=_unique_columns(table.columns))
    return frame, pd.DataFrame(styles, columns=frame.columns)


def _unique_columns(columns: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for column in columns:
        seen[column] = seen.get(column, 0) + 1
        unique.append(column if seen[column] == 1 else f"{column} ({seen[column]})")
    return unique


def show_table(table: Table, key: str) -> None:
    """An HTML table with Δ shading, its caption, and a button to download it as CSV.

    Example:
        >>> show_table(content.tables[0], key="summary")  # doctest: +SKIP
    """
    frame, styles = _display(table)
    st.markdown(f"**{table.title}**")
    st.table(frame.style.apply(lambda _: styles, axis=None), hide_index=True, alt=table.title)
    st.download_button(f"Download {table.filename}", table.csv(), file_name=table.filename, mime="text/csv",
                       key=f"csv-{key}-{table.name}")


def show_chart(chart: Chart) -> None:
    """A PNG chart with its alt text (read by screen readers) and its title as the caption.

    Example:
        >>> show_chart(corruption_heatmap(report))  # doctest: +SKIP
    """
    st.image(chart.png, caption=chart.title, alt=chart.alt)


def show_kpis(rows: Sequence[tuple[str, float, float | None, str]]) -> None:
    """KPIs as ``st.metric`` cards: ``(label, value, delta, metric name)``; Δ blue when better, orange when worse.

    Example:
        >>> show_kpis([("Clean accuracy", 0.98, -0.01, "accuracy")])  # doctest: +SKIP
    """
    columns = st.columns(min(4, max(1, len(rows))))
    for index, (label, value, delta, metric) in enumerate(rows):
        color: Any = "off"
        if delta:
            color = "blue" if (delta > 0) == higher_is_better(metric) else "orange"
        columns[index % len(columns)].metric(label, f"{value:.4f}", None if delta is None else format_delta(delta),
                                             delta_color=color, delta_arrow="auto" if delta else "off", border=True)


def pick_project(data_source: Any, key: str) -> dict[str, Any]:
    """A project picker for the API pages; stops the page when there is no project or the call fails.

    Example:
        >>> pick_project(source(), key="launch-project")["id"]  # doctest: +SKIP
        1
    """
    try:
        projects = data_source.projects()
    except SourceError as error:
        st.error(str(error))
        st.stop()
    if not projects:
        st.warning("The service has no project you can read; create one through the API first.")
        st.stop()
    index = st.selectbox("Project", range(len(projects)), format_func=lambda i: projects[i]["name"], key=key)
    return projects[index]


def items_table(name: str, title: str, items: Sequence[dict[str, Any]], columns: Sequence[str], key: str) -> None:
    """API items as a table (chosen columns, in order) with a CSV download.

    Example:
        >>> items_table("models", "Models", [{"name": "r18", "version": 2}], ["name", "version"], "m")  # doctest: +SKIP
    """
    show_table(Table(name, title, list(columns), [[_plain(item.get(column)) for column in columns]
                                                  for item in items]), key=key)


def _plain(value: Any) -> str | int | float | None:
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def log_tail(data_source: DataSource, run: RunRef, lines: int = LOG_LINES) -> None:
    """The run's status and last ``lines`` log lines, fetched incrementally and refreshed every 2 s while it runs.

    When the log reports that the run ended, the whole page reruns so that it can show the results.

    Example:
        >>> log_tail(source(), run)  # doctest: +SKIP
    """

    @st.fragment(run_every=REFRESH_SECONDS if run.active else None)
    def _tail() -> None:
        state = st.session_state.setdefault(f"log-{run.id}", {"offset": 0, "text": ""})
        try:
            chunk = data_source.logs(run.id, state["offset"])
        except SourceError as error:
            st.warning(str(error))
            return
        state["text"] = (state["text"] + chunk.text)[-200_000:]
        state["offset"] = chunk.next_offset
        st.markdown(f"**Status:** {chunk.status or run.status}" + (" (refreshing every 2 s)" if run.active else ""))
        st.code("\n".join(state["text"].splitlines()[-lines:]) or "(no log output yet)", language=None)
        if run.active and chunk.status and chunk.status not in ACTIVE:
            st.rerun()  # the run just ended: show its results

    _tail()
