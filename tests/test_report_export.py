"""Report export: HTML sections and CSV links, PDF pages, numbers equal to the JSON, plots with alt text, CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader

from robustlit.cli.main import main
from robustlit.reporting import Finding, Metric, read_report
from robustlit.reporting.compare import kpis, regressions
from robustlit.reporting.csv_export import metrics_csv, write_csv
from robustlit.reporting.export import export_reports, parse_formats
from robustlit.reporting.html import render_html
from robustlit.reporting.pdf import render_pdf
from robustlit.reporting.plots import (
    CORRUPTION_PLOT,
    METRIC_PLOTS,
    PALETTE,
    alt_text,
    corruption_grid,
    plot_report,
)
from robustlit.reporting.sections import build_content, load_runs

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
STANDARD, ROBUST, CLEAN_ONLY = (FIXTURES / name for name in ("cifar_standard", "cifar_pgd_at", "digits_clean_only"))
DEMO = [FIXTURES / "demo_baseline", FIXTURES / "demo_pgd_at_ls"]


class _Page(HTMLParser):
    """Collects sections, "what this means" lines, images and CSV download links of an exported page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.downloads: dict[str, str] = {}
        self.meanings = 0
        self._in_meaning = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(attributes["id"])
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "a" and "download" in attributes:
            payload = attributes["href"].split("base64,", 1)[1]
            self.downloads[attributes["download"]] = base64.b64decode(payload).decode("utf-8")
        elif tag == "p" and attributes.get("class") == "meaning":
            self.meanings += 1


@pytest.fixture(scope="module")
def content():
    """Both CIFAR fixtures, the standard model as the baseline."""
    return build_content(load_runs([ROBUST]), load_runs([STANDARD])[0])


@pytest.fixture(scope="module")
def page(content):
    parser = _Page()
    parser.feed(render_html(content))
    return parser


def test_html_has_every_section_with_a_meaning_line(content, page):
    expected = ["summary", "adversarial", "corruption", "calibration", "ood", "selective", "groups", "certified",
                "warnings", "config", "data"]
    assert page.sections == expected == [section.key for section in content.sections]
    assert page.meanings == len(expected)
    assert content.omitted == [] and content.omitted_note is None


def test_html_has_a_csv_download_per_table_with_the_table_contents(content, page):
    assert set(page.downloads) == {table.filename for table in content.tables} | {"metrics.csv"}
    for table in content.tables:
        assert page.downloads[table.filename] == table.csv()


def test_html_embeds_every_chart_with_alt_text(content, page):
    charts = [chart for section in content.sections for chart in section.charts]
    assert len(page.images) == len(charts) >= 9  # 6 drawn from metrics (2 heatmaps) + 4 OOD artifacts
    assert all(image["src"].startswith("data:image/png;base64,") and len(image["alt"]) > 40 for image in page.images)
    alts = " ".join(image["alt"] for image in page.images)
    assert "ROC curve of the energy detector for cifar_standard" in alts  # an OOD artifact written by the suite
    assert "Heatmap of corruption error for cifar_pgd_at" in alts


def test_numbers_in_the_exports_equal_the_json(page):
    reports = {path.name: json.loads((path / "robustness_report.json").read_text()) for path in (STANDARD, ROBUST)}
    rows = list(csv.DictReader(io.StringIO(page.downloads["adversarial_robust_accuracy.csv"])))
    assert len(rows) == 4
    for row in rows:
        for run, report in reports.items():
            match = [m["value"] for m in report["metrics"] if m["suite"] == "adversarial"
                     and m["context"]["attack"] == row["attack"] and m["context"]["eps"] == float(row["eps"])]
            assert float(row[run]) == match[0]
        assert float(row["Δ cifar_pgd_at"]) == pytest.approx(float(row["cifar_pgd_at"]) - float(row["cifar_standard"]),
                                                             abs=1e-12)
    exported = list(csv.DictReader(io.StringIO(page.downloads["metrics.csv"])))
    for run, report in reports.items():
        values = [(r["suite"], r["name"], float(r["value"]), json.loads(r["context"])) for r in exported
                  if r["run"] == run]
        assert values == [(m["suite"], m["name"], m["value"], m["context"]) for m in report["metrics"]]
    kpi_rows = {row["kpi"]: row for row in csv.DictReader(io.StringIO(page.downloads["summary_kpis.csv"]))}
    assert float(kpi_rows["Clean accuracy"]["cifar_pgd_at"]) == reports["cifar_pgd_at"]["metrics"][0]["value"]
    assert float(kpi_rows["Robust accuracy (Linf, ε=8/255)"]["cifar_pgd_at"]) == 0.4512  # worst attack: AutoAttack


def test_html_shows_formatted_numbers_and_marks_deltas_in_text_not_only_colour(content):
    html = render_html(content)
    assert '<td class="num better" title="better than the baseline">▲ +0.4512</td>' in html
    assert '<td class="num worse" title="worse than the baseline">▼ -0.0981</td>' in html
    assert "<td class=\"num \">0.8431</td>" in html


def test_sections_without_data_are_omitted_with_a_note():
    content = build_content(load_runs([CLEAN_ONLY]))
    assert [section.key for section in content.sections] == ["summary", "config", "data"]
    assert content.omitted_note == ("Omitted for lack of data: Adversarial robustness, Corruption robustness, "
                                    "Calibration, Out-of-distribution detection, Selective prediction, Worst-group "
                                    "accuracy, Certified robustness, Gradient-masking and other warnings.")
    assert content.omitted_note in render_html(content)


def test_warnings_section_tells_gradient_masking_from_other_findings():
    run = load_runs([CLEAN_ONLY])[0]
    run.report.warnings.append(Finding("calibration", "temperature_not_converged", "did not converge"))
    section = next(s for s in build_content([run]).sections if s.key == "warnings")
    assert section.meaning == ("No attack was run, so gradient masking was not checked. 1 other warning(s) from the "
                               "calibration suite(s) are listed too; each says what to check.")
    assert section.tables[0].rows == [["digits_clean_only", "calibration", "temperature_not_converged",
                                       "did not converge"]]
    robust = next(s for s in build_content(load_runs([ROBUST])).sections if s.key == "warnings")
    assert robust.meaning.startswith("1 gradient-masking warning(s)")


def test_pdf_puts_each_section_on_its_own_page():
    small = PdfReader(io.BytesIO(render_pdf(build_content(load_runs([CLEAN_ONLY])))))
    assert len(small.pages) == 4  # cover + summary + configuration + data fingerprint
    titles = [page.extract_text().splitlines()[0] for page in small.pages]
    assert titles == ["Robustness report: digits_clean_only", "Summary", "Configuration and seed", "Data fingerprint"]


def test_pdf_has_the_same_content_as_the_html(content):
    reader = PdfReader(io.BytesIO(render_pdf(content)))
    texts = [page.extract_text() for page in reader.pages]
    first_lines = [text.splitlines()[0] for text in texts]
    starts = [first_lines.index(section.title) for section in content.sections]
    assert starts == sorted(starts) and starts[0] == 1  # every section starts a page, in order, after the cover
    assert len(reader.pages) >= 1 + len(content.sections)
    everything = "\n".join(texts)
    assert "▲ +0.4512" in everything and "▼ -0.0981" in everything
    flat = re.sub(r"\s+", " ", everything)
    for section in content.sections:
        assert re.sub(r"\s+", " ", section.meaning)[:60] in flat


def test_kpis_and_regressions_follow_the_threshold():
    base = read_report(STANDARD)
    assert [k.label for k in kpis(base)][:3] == ["Clean accuracy", "Robust accuracy (Linf, ε=8/255)",
                                                 "Mean corruption error (mCE)"]
    candidate = read_report(STANDARD)
    eps = round(8 / 255, 7)
    target = candidate.find("adversarial", "robust_accuracy", attack="pgd", eps=round(2 / 255, 7))[0]
    target.value = round(target.value - 0.05, 10)  # exactly 5 points lower: not a regression
    assert regressions(candidate, base) == []
    target.value -= 0.001
    found = regressions(candidate, base)
    assert [(r.label, r.baseline) for r in found] == [("pgd Linf ε=2/255 steps=20 restarts=1", 0.2143)]
    candidate.metrics.append(Metric("adversarial", "robust_accuracy", 0.0, {"attack": "pgd", "norm": "L2",
                                                                           "eps": eps}))
    assert len(regressions(candidate, base)) == 1  # a threat model the baseline lacks is not compared
    with pytest.raises(ValueError, match="non-negative"):
        regressions(candidate, base, threshold=-0.1)


def test_plot_report_writes_every_metric_plot_with_alt_text(tmp_path):
    report = read_report(ROBUST)
    paths = plot_report(report, tmp_path)
    assert [p.name for p in paths] == list(METRIC_PLOTS)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(alt_text(path)) > 40
    corruptions, severities, grid = corruption_grid(report)
    assert len(corruptions) == 19 and severities == [1, 2, 3, 4, 5]
    worst = max(v for row in grid for v in row)
    assert f"to {100 * worst:.1f}% (glass_blur, severity 5)" in alt_text(tmp_path / CORRUPTION_PLOT)
    assert plot_report(read_report(CLEAN_ONLY), tmp_path / "none") == []
    assert PALETTE[:3] == ("#0072B2", "#E69F00", "#009E73")  # Okabe–Ito


def test_csv_export_writes_one_file_per_table(content, tmp_path):
    paths = write_csv(content, tmp_path)
    assert [p.name for p in paths] == [t.filename for t in content.tables] + ["metrics.csv"]
    assert paths[-1].read_bytes().decode() == metrics_csv(content)  # CRLF line ends kept (RFC 4180)


def test_report_command_writes_every_format(tmp_path, capsys):
    out = tmp_path / "out"
    main(["report", str(DEMO[1]), "--baseline", str(DEMO[0]), "--format", "html,pdf,json,csv", "--output", str(out)])
    printed = capsys.readouterr().out.split()
    assert str(out / "robustness_report.html") in printed and str(out / "robustness_report.pdf") in printed
    for path in DEMO:  # the JSON export is each report file itself
        assert (out / "json" / f"{path.name}.json").read_bytes() == (path / "robustness_report.json").read_bytes()
    tables = sorted(p.name for p in (out / "csv").iterdir())
    assert tables == sorted(["summary_kpis.csv", "adversarial_robust_accuracy.csv", "calibration_metrics.csv",
                             "run_info.csv", "configuration.csv", "timings.csv", "data_fingerprint.csv",
                             "metrics.csv"])
    assert PdfReader(out / "robustness_report.pdf").pages


def test_report_command_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(ROBUST), "--format", "html,docx", "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--format docx is not supported; choose from html,pdf,json,csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "missing"), "--output", str(tmp_path)])
    assert "cannot read report" in capsys.readouterr().err
    assert parse_formats(" HTML,pdf,html ") == ["html", "pdf"]


def test_export_of_the_real_demo_runs(tmp_path):
    paths = export_reports([DEMO[1]], tmp_path, "html,pdf", baseline=DEMO[0])
    page = _Page()
    page.feed(paths[0].read_text())
    assert page.sections == ["summary", "adversarial", "calibration", "warnings", "config", "data"]
    robust = read_report(DEMO[1]).find("clean", "accuracy")[0].value
    kpi = list(csv.DictReader(io.StringIO(page.downloads["summary_kpis.csv"])))[0]
    assert float(kpi["demo_pgd_at_ls"]) == robust
    assert re.search(r"same test samples", paths[0].read_text())  # both demo runs share the data fingerprint
    assert len(PdfReader(paths[1]).pages) >= 7
