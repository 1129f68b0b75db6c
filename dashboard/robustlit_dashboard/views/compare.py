"""Compare: a baseline against candidate runs, with coloured metric deltas and overlaid curves."""

from __future__ import annotations

import streamlit as st
from robustlit_dashboard import ui

from robustlit.reporting.sections import ReportContent, RunSource, build_content


@st.cache_data(show_spinner="Comparing runs…", max_entries=16)
def _content(key: tuple[str, ...], _runs: list[RunSource], _baseline: RunSource) -> ReportContent:
    return build_content(_runs, _baseline)


st.title("Compare runs")
source = ui.source()
finished = ui.load_sources(source, [run for run in ui.list_runs(source) if not run.active][:50])
if len(finished) < 2:
    st.info("Comparing needs at least two finished runs.")
    st.stop()
by_label = {item.label: item for item in finished.values()}
labels = list(by_label)
picked = st.query_params.get("baseline")
baseline_label = st.selectbox("Baseline", labels, index=labels.index(picked) if picked in labels
                              else ui.default_baseline(labels))
others = [label for label in labels if label != baseline_label]
candidates = st.multiselect("Candidates", others, default=others[:3],
                            help="Each candidate's metrics are shown next to the baseline's, with the difference.")
if not candidates:
    st.info("Pick at least one candidate to compare with the baseline.")
    st.stop()
baseline = by_label[baseline_label]
chosen = [by_label[label] for label in candidates]
key = tuple(f"{item.label}@{item.report.run.id}@{item.report.run.finished_at}" for item in [baseline, *chosen])
content = _content(key, chosen, baseline)

st.caption("Δ columns show candidate minus baseline: ▲ on blue is better, ▼ on orange is worse.")
for index, section in enumerate(content.sections):
    if section.key in ("config", "plots"):
        continue
    st.header(section.title)
    st.markdown(f"**What this means:** {section.meaning}")
    for note in section.notes:
        st.warning(note, icon=":material/warning:")
    for chart in section.charts:
        ui.show_chart(chart)
    for table in section.tables:
        ui.show_table(table, key=f"compare-{index}")
if content.omitted_note:
    st.caption(content.omitted_note)
