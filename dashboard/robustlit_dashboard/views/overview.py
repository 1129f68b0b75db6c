"""Overview: headline numbers of the newest run, recent runs, and regressions against a baseline."""

from __future__ import annotations

import streamlit as st
from robustlit_dashboard import ui

from robustlit.reporting.compare import REGRESSION_THRESHOLD, kpis, regressions
from robustlit.reporting.sections import Table

st.title("Overview")
source = ui.source()
runs = ui.list_runs(source, limit=50)
finished = ui.load_sources(source, [run for run in runs if not run.active][:20])
if not finished:
    st.info("No run has finished yet; the Run detail page follows a running one.")
    st.stop()
loaded = list(finished.values())
labels = [item.label for item in loaded]
baseline_label = st.selectbox("Baseline", labels, index=ui.default_baseline(labels),
                              help="Regressions and deltas are measured against this run.")
baseline = loaded[labels.index(baseline_label)]
newest = next((item for item in loaded if item is not baseline), baseline)

st.subheader(f"Newest run: {newest.label}")
base_kpis = {kpi.label: kpi.value for kpi in kpis(baseline.report)}
ui.show_kpis([
    (kpi.label, kpi.value,
     kpi.value - base_kpis[kpi.label] if kpi.label in base_kpis and newest is not baseline else None, kpi.metric)
    for kpi in kpis(newest.report)
])

st.subheader("Regressions")
flagged = [
    [item.label, found.label, found.baseline, found.value, found.delta]
    for item in loaded if item is not baseline for found in regressions(item.report, baseline.report)
]
if flagged:
    st.error(f"{len(flagged)} robust accuracy value(s) are more than {REGRESSION_THRESHOLD:.0%} below "
             f"{baseline_label}'s.", icon=":material/warning:")
    ui.show_table(Table("regressions", f"Robust accuracy more than {REGRESSION_THRESHOLD:.0%} below {baseline_label}",
                        ["run", "attack", baseline_label, "value", f"Δ {baseline_label}"], flagged,
                        {str(i): True for i in range(len(flagged))}), key="overview")
else:
    st.success(f"No regressions: no run's robust accuracy is more than {REGRESSION_THRESHOLD:.0%} below "
               f"{baseline_label}'s under the same attack and ε.", icon=":material/check_circle:")

st.subheader("Recent runs")
rows = []
for run in runs:
    values = {kpi.metric: kpi.value for kpi in kpis(finished[run.id].report)} if run.id in finished else {}
    rows.append([run.name, run.status, run.created_at, run.id, values.get("accuracy"), values.get("robust_accuracy")])
ui.show_table(Table("recent_runs", "Recent runs",
                    ["run", "status", "finished or created", "id", "clean accuracy", "robust accuracy"], rows),
              key="overview")
