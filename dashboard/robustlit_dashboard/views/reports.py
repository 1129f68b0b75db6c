"""Reports: build the HTML/PDF/CSV export of chosen runs, download it, and copy share links."""

from __future__ import annotations

import io
import zipfile
from urllib.parse import quote

import streamlit as st
from robustlit_dashboard import ui

from robustlit.reporting.csv_export import METRICS_CSV, metrics_csv
from robustlit.reporting.html import render_html
from robustlit.reporting.pdf import render_pdf
from robustlit.reporting.sections import build_content

st.title("Reports")
source = ui.source()
finished = ui.load_sources(source, [run for run in ui.list_runs(source) if not run.active][:50])
if not finished:
    st.info("No finished run to report on yet.")
    st.stop()
by_label = {item.label: item for item in finished.values()}
labels = list(by_label)
baseline_label = st.selectbox("Baseline (deltas are measured against it)", ["(none)", *labels],
                              index=1 + ui.default_baseline(labels) if len(labels) > 1 else 0)
others = [label for label in labels if label != baseline_label]
chosen = st.multiselect("Runs in the report", others, default=others[:3])
title = st.text_input("Title", value="", placeholder="Robustness report: <run names>")

if st.button("Build report", type="primary", disabled=not chosen and baseline_label == "(none)"):
    with st.spinner("Rendering HTML and PDF…"):
        baseline = by_label.get(baseline_label)
        content = build_content([by_label[label] for label in chosen], baseline, title=title or None)
        tables = io.BytesIO()
        with zipfile.ZipFile(tables, "w", zipfile.ZIP_DEFLATED) as archive:
            for table in content.tables:
                archive.writestr(table.filename, table.csv())
            archive.writestr(METRICS_CSV, metrics_csv(content))
        st.session_state["report-files"] = {
            "html": render_html(content).encode("utf-8"), "pdf": render_pdf(content), "zip": tables.getvalue(),
            "csv": metrics_csv(content).encode("utf-8"), "sections": [s.title for s in content.sections],
            "omitted": content.omitted_note, "choice": (baseline_label, tuple(chosen), title),
        }

files = st.session_state.get("report-files")
if files and files["choice"] == (baseline_label, tuple(chosen), title):  # never offer a stale build
    st.success("Report ready: " + ", ".join(files["sections"]) + ".")
    if files["omitted"]:
        st.caption(files["omitted"])
    columns = st.columns(4)
    columns[0].download_button("Download HTML", files["html"], "robustness_report.html", "text/html")
    columns[1].download_button("Download PDF", files["pdf"], "robustness_report.pdf", "application/pdf")
    columns[2].download_button("Download tables (CSV, zip)", files["zip"], "robustness_report_csv.zip",
                               "application/zip")
    columns[3].download_button("Download all metrics (CSV)", files["csv"], METRICS_CSV, "text/csv")

st.header("Share links")
st.caption("Each box has a copy button. Dashboard links open the Run detail and Compare pages on the same runs.")
base = (st.context.url or "").split("?")[0].rsplit("/", 1)[0]
for label in ([baseline_label] if baseline_label in by_label else []) + chosen:
    run_id = next(key for key, item in finished.items() if item.label == label)
    st.markdown(f"**{label}**")
    st.code(f"{base}/run_detail?run={quote(run_id)}", language=None)
    if (api_link := source.share_link(run_id)) is not None:
        st.code(api_link, language=None)
if baseline_label in by_label:
    st.code(f"{base}/compare?baseline={quote(baseline_label)}", language=None)
