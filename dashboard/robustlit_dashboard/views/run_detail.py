"""Run detail: the live log while a run is going, then its metrics, charts and plots."""

from __future__ import annotations

import streamlit as st
from robustlit_dashboard import ui

from robustlit.reporting.sections import REDRAWN_ARTIFACTS, build_content

st.title("Run detail")
source = ui.source()
runs = ui.list_runs(source)
ids = [run.id for run in runs]
wanted = st.query_params.get("run")
run = runs[st.selectbox("Run", range(len(runs)), format_func=lambda i: ui.run_label(runs[i]),
                        index=ids.index(wanted) if wanted in ids else 0)]
st.query_params["run"] = run.id


if run.active:
    st.subheader("Live log")
    ui.log_tail(source, run)
    st.stop()
with st.expander("Log", expanded=False):
    ui.log_tail(source, run)

loaded = ui.load_sources(source, [run])
if run.id not in loaded:
    st.info(f"Run {run.name} has no report (status: {run.status}).")
    st.stop()
item = loaded[run.id]
report = item.report
st.markdown(f"**{report.run.name}** · {report.run.type} · model {report.model.name} ({report.model.params:,} "
            f"parameters) · data {report.data.name} (n={report.data.n_test}) · seed {report.run.seed} · "
            f"finished {report.run.finished_at}")
for finding in report.warnings:
    st.warning(f"[{finding.suite}/{finding.check}] {finding.message}", icon=":material/warning:")

content = build_content([item])
st.header("Charts")
charts = [chart for section in content.sections for chart in section.charts]
if item.directory is None:  # the plot files live behind the API, not beside the report
    charts += [plot for plot in source.plots(run.id) if plot.name not in REDRAWN_ARTIFACTS]
for chart in charts:
    ui.show_chart(chart)
if not charts:
    st.caption("No chart can be drawn from this run's metrics, and it wrote no plots.")

st.header("Metrics")
for index, section in enumerate(content.sections):
    with st.expander(section.title, expanded=section.key == "summary"):
        st.markdown(f"**What this means:** {section.meaning}")
        for table in section.tables:
            ui.show_table(table, key=f"detail-{index}")
if content.omitted_note:
    st.caption(content.omitted_note)
