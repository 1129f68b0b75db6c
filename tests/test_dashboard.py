"""Dashboard pages on a runs folder (Streamlit AppTest with the report fixtures), the folder source and the launcher."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from robustlit_dashboard.launch import APP, dashboard_command, dashboard_environment
from robustlit_dashboard.sources import FolderSource, SourceError, source_from_env
from streamlit.testing.v1 import AppTest

from robustlit.cli.main import build_parser, main
from robustlit.errors import ConfigError
from robustlit.reporting import read_report

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
VIEWS = Path(__file__).resolve().parents[1] / "dashboard" / "robustlit_dashboard" / "views"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A runs folder with the three hand-written fixtures nested at different depths, and a broken report."""
    root = tmp_path / "runs"
    shutil.copytree(FIXTURES / "cifar_standard", root / "cifar" / "cifar_standard")
    shutil.copytree(FIXTURES / "cifar_pgd_at", root / "cifar" / "cifar_pgd_at")
    shutil.copytree(FIXTURES / "digits_clean_only", root / "digits_clean_only")
    (root / "broken").mkdir()
    (root / "broken" / "robustness_report.json").write_text("{not json")
    monkeypatch.delenv("ROBUSTLIT_API_URL", raising=False)
    monkeypatch.setenv("ROBUSTLIT_DASHBOARD_RUNS", str(root))
    return root


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=120)


def _value(name: str, suite: str, metric: str, **context) -> float:
    report = read_report(FIXTURES / name)
    return report.find(suite, metric, **context)[0].value


def test_folder_source_finds_reports_recursively_and_skips_broken_ones(runs):
    source = FolderSource(runs)
    refs, total = source.runs()
    assert total == 3  # the broken report is skipped, not fatal
    assert [ref.id for ref in refs] == ["digits_clean_only", "cifar/cifar_pgd_at", "cifar/cifar_standard"]
    assert source.report("cifar/cifar_pgd_at").run.name == "cifar_pgd_at"
    plots = source.plots("cifar/cifar_standard")
    assert sorted(p.name for p in plots) == ["ood_roc.png", "ood_score_histogram.png"]
    assert all(p.alt and p.png.startswith(b"\x89PNG") for p in plots)
    assert source.plots("digits_clean_only") == []  # its listed plot file does not exist
    (runs / "digits_clean_only" / "job.log").write_text("epoch 1\nepoch 2\n")
    chunk = source.logs("digits_clean_only", 6)
    assert chunk.text == "1\nepoch 2\n" and chunk.next_offset == 16
    with pytest.raises(SourceError, match=r"no run '\.\./\.\.' under"):
        source.report("../..")
    with pytest.raises(SourceError, match="is not a folder"):
        FolderSource(runs / "nope")
    assert source_from_env({"ROBUSTLIT_DASHBOARD_RUNS": str(runs)}).kind == "folder"
    assert source_from_env({"ROBUSTLIT_API_URL": "http://127.0.0.1:1", "ROBUSTLIT_API_KEY": "k"}).kind == "api"


def test_overview_shows_kpis_deltas_and_recent_runs(runs):
    at = _page("overview").run()
    assert not at.exception
    assert at.selectbox[0].value == "cifar_standard"
    assert at.success and "No regressions" in at.success[0].value
    cards = {metric.label: metric for metric in at.metric}
    # the newest run is digits_clean_only: only clean accuracy, compared with the baseline's
    clean = _value("digits_clean_only", "clean", "accuracy")
    assert cards["Clean accuracy"].value == f"{clean:.4f}"
    assert cards["Clean accuracy"].proto.delta == f"{clean - _value('cifar_standard', 'clean', 'accuracy'):+.4f}"
    recent = at.table[0].value
    assert list(recent["run"]) == ["digits_clean_only", "cifar_pgd_at", "cifar_standard"]
    assert list(recent["robust accuracy"]) == ["—", "0.4512", "0.0000"]
    assert [button.proto.label for button in at.get("download_button")] == ["Download recent_runs.csv"]


def test_overview_flags_a_regression_against_the_robust_baseline(runs):
    at = _page("overview").run()
    at.selectbox[0].set_value("cifar_pgd_at").run()
    assert "4 robust accuracy value(s) are more than 5% below cifar_pgd_at's" in at.error[0].value
    flagged = at.table[0].value
    expected = _value("cifar_standard", "adversarial", "robust_accuracy", attack="pgd", eps=round(8 / 255, 7))
    assert f"{expected:.4f}" in list(flagged["value"])
    assert all(delta.startswith("▼ -") for delta in flagged["Δ cifar_pgd_at"])


def test_compare_shows_colour_coded_diffs_and_overlaid_curves(runs):
    at = _page("compare").run()
    assert not at.exception
    assert at.selectbox[0].value == "cifar_standard"
    at.multiselect[0].set_value(["cifar_pgd_at"]).run()
    summary = at.table[0].value
    row = summary[summary["kpi"] == "Clean accuracy"].iloc[0]
    base, cand = _value("cifar_standard", "clean", "accuracy"), _value("cifar_pgd_at", "clean", "accuracy")
    assert (row["cifar_standard"], row["cifar_pgd_at"]) == (f"{base:.4f}", f"{cand:.4f}")
    assert row["Δ cifar_pgd_at"] == f"▼ {cand - base:+.4f}"
    styles = at.table[0].proto.arrow_data.styler.styles
    assert "#f9d9c0" in styles and "#cfe6f5" in styles  # orange for worse, blue for better
    headers = [header.value for header in at.header]
    assert headers[:4] == ["Summary", "Adversarial robustness", "Corruption robustness", "Calibration"]
    images = at.get("image")
    curve = next(image for image in images if image.proto.imgs[0].caption == "Robust accuracy vs ε")
    alt = curve.proto.imgs[0].alt
    assert "cifar_standard under pgd (Linf)" in alt and "cifar_pgd_at under pgd (Linf)" in alt  # overlaid runs
    assert all(image.proto.imgs[0].alt for image in images)
    tables, downloads = at.table, at.get("download_button")
    assert len(downloads) == len(tables) and all(d.proto.label.endswith(".csv") for d in downloads)


def test_run_detail_shows_charts_tables_and_warnings(runs):
    at = _page("run_detail")
    at.query_params["run"] = "cifar/cifar_pgd_at"
    at.run()
    assert not at.exception
    assert "possible gradient masking" in at.warning[0].value
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    assert "Corruption error: cifar_pgd_at" in captions and "cifar_pgd_at: ood_roc.png" in captions
    summary = at.table[0].value
    assert summary.iloc[0]["cifar_pgd_at"] == f"{_value('cifar_pgd_at', 'clean', 'accuracy'):.4f}"


def test_reports_page_builds_downloads_and_share_links(runs):
    at = _page("reports").run()
    assert not at.exception
    at.multiselect[0].set_value(["cifar_pgd_at"]).run()
    at.button[0].click().run()
    assert not at.exception and "Report ready" in at.success[0].value
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels == ["Download HTML", "Download PDF", "Download tables (CSV, zip)", "Download all metrics (CSV)"]
    codes = [code.value for code in at.code]
    assert any(code.endswith("/run_detail?run=cifar/cifar_pgd_at") for code in codes)
    assert any(code.endswith("/compare?baseline=cifar_standard") for code in codes)


@pytest.mark.parametrize("page", ["recipe_builder", "launcher", "registry"])
def test_api_pages_explain_they_need_the_service(runs, page):
    at = _page(page).run()
    assert not at.exception
    assert "needs the robustlit service" in at.info[0].value and "--api" in at.info[0].value


def test_app_navigation_lists_every_page(runs):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "Overview"
    text = APP.read_text()
    for page in ("Overview", "Compare", "Run detail", "Reports", "Recipe builder", "Launcher", "Registry"):
        assert f'"{page}"' in text
    assert sorted(p.name for p in VIEWS.glob("*.py")) == sorted(
        ["overview.py", "compare.py", "run_detail.py", "reports.py", "recipe_builder.py", "launcher.py", "registry.py"])


def test_dashboard_command_and_environment(runs, tmp_path, capsys):
    command = dashboard_command(8600)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    assert command[command.index("--server.port") + 1] == "8600"
    environment = dashboard_environment(runs=str(runs), base={"ROBUSTLIT_API_URL": "http://x"})
    assert environment["ROBUSTLIT_DASHBOARD_RUNS"] == str(runs.resolve()) and "ROBUSTLIT_API_URL" not in environment
    environment = dashboard_environment(api="http://127.0.0.1:8000", api_key="secret", base={})
    assert environment["ROBUSTLIT_API_KEY"] == "secret" and "secret" not in " ".join(command)
    with pytest.raises(ConfigError, match="either --runs DIR or --api URL"):
        dashboard_environment(runs=str(runs), api="http://x", base={})
    with pytest.raises(ConfigError, match="--api needs --api-key"):
        dashboard_environment(api="http://x", base={})
    with pytest.raises(ConfigError, match="is not a folder"):
        dashboard_environment(runs=str(tmp_path / "nope"), base={})
    with pytest.raises(ConfigError, match="--port 0 is not a TCP port"):
        dashboard_command(0)
    args = build_parser().parse_args(["dashboard", "--runs", str(runs), "--port", "8600"])
    assert (args.runs, args.port, args.api) == (str(runs), 8600, None)
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--runs", str(tmp_path / "nope")])
    assert exit_info.value.code == 2 and "robustlit dashboard: error: --runs" in capsys.readouterr().err


def test_fixture_reports_follow_the_metric_contract():
    """The hand-written fixtures use the contract's metric names and context keys (COMMON.md)."""
    contract = {
        "clean/accuracy": set(), "adversarial/robust_accuracy": {"attack", "norm", "eps"},
        "corruption/error": {"corruption", "severity"}, "corruption/mean_error": {"corruption"},
        "corruption/mce": {"baseline"}, "calibration/ece": {"bins", "temperature", "split"},
        "calibration/bin_accuracy": {"bin", "lo", "hi", "confidence", "count", "split"},
        "calibration/threshold": {"target_risk", "coverage"}, "ood/auroc": {"detector", "ood_set"},
        "ood/fpr95": {"detector", "ood_set"}, "selective/coverage_at_risk": {"risk"}, "groups/accuracy": {"group"},
        "certified/certified_accuracy": {"method", "norm", "radius", "guarantee"},
        "certified/median_radius": {"method", "norm", "guarantee"}, "certified/abstain_rate": {"method"},
    }
    for name in ("cifar_standard", "cifar_pgd_at"):
        data = json.loads((FIXTURES / name / "robustness_report.json").read_text())
        seen = {f"{m['suite']}/{m['name']}": set(m["context"]) for m in data["metrics"]}
        for key, context in contract.items():
            assert key in seen and context <= seen[key], (name, key)
