"""The dashboard in a real browser: ``streamlit run`` on loopback, driven by headless Debian chromium (Playwright).

The screenshots go to a temporary folder; with ``ROBUSTLIT_UPDATE_SCREENSHOTS=1`` they replace the ones in
``docs/img/`` that ``docs/dashboard.md`` shows.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from robustlit_dashboard.launch import dashboard_command, dashboard_environment

from robustlit.reporting import read_report
from robustlit.reporting.export import export_reports

CHROMIUM = Path("/usr/bin/chromium")
FIXTURES = Path(__file__).parent / "fixtures" / "reports"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """``robustlit dashboard --runs`` on the two real demo runs, served on a free loopback port."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium package to run the browser test")
    runs = tmp_path_factory.mktemp("runs")
    for name in ("demo_baseline", "demo_pgd_at_ls"):
        shutil.copytree(FIXTURES / name, runs / name)
    port = _free_port()
    log = (tmp_path_factory.mktemp("log") / "streamlit.log").open("w")
    process = subprocess.Popen(dashboard_command(port), env=dashboard_environment(runs=str(runs)),
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not answer on {url} within 90 s")
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium package to run the browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _screenshot_dir(tmp_path: Path) -> Path:
    if os.environ.get("ROBUSTLIT_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG
    return tmp_path


def test_compare_page_shows_both_demo_runs_side_by_side(dashboard, browser, tmp_path):
    baseline, robust = (read_report(FIXTURES / name) for name in ("demo_baseline", "demo_pgd_at_ls"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{dashboard}/compare", wait_until="networkidle")
    page.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
    summary = page.locator("table").first
    summary.wait_for(timeout=120_000)
    text = summary.inner_text()
    clean = [report.find("clean", "accuracy")[0].value for report in (baseline, robust)]
    worst = [min(m.value for m in report.find("adversarial", "robust_accuracy")) for report in (baseline, robust)]
    for value in [*clean, *worst]:
        assert f"{value:.4f}" in text
    assert f"{clean[1] - clean[0]:+.4f}" in text and f"▲ {worst[1] - worst[0]:+.4f}" in text
    assert page.get_by_text("Δ columns show candidate minus baseline").is_visible()
    curve = page.locator("img[alt^='Line chart of robust accuracy']")
    curve.wait_for(timeout=60_000)
    assert "baseline under pgd (Linf)" in curve.get_attribute("alt")
    assert "pgd_at_ls under pgd (Linf)" in curve.get_attribute("alt")
    path = _screenshot_dir(tmp_path) / "dashboard-compare.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 20_000
    page.keyboard.press("Tab")  # keyboard focus reaches a control
    assert page.evaluate("document.activeElement && document.activeElement.tagName") in ("A", "BUTTON", "INPUT")
    page.close()


def test_overview_page_renders_kpis(dashboard, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(dashboard, wait_until="networkidle")
    page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
    page.get_by_text("No regressions").wait_for(timeout=60_000)
    robust = read_report(FIXTURES / "demo_pgd_at_ls").find("clean", "accuracy")[0].value
    assert f"{robust:.4f}" in page.locator("[data-testid='stMetric']").first.inner_text()
    path = _screenshot_dir(tmp_path) / "dashboard-overview.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000
    page.close()


def test_exported_html_report_works_offline_in_the_browser(browser, tmp_path):
    html = export_reports([FIXTURES / "cifar_pgd_at"], tmp_path / "report", "html",
                          baseline=FIXTURES / "cifar_standard")[0]
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.goto(html.as_uri(), wait_until="load")
    for title in ("Summary", "Corruption robustness", "Out-of-distribution detection", "Data fingerprint"):
        assert page.get_by_role("heading", name=title, exact=True).is_visible()
    widths = page.eval_on_selector_all("img", "images => images.map(image => image.naturalWidth)")
    assert len(widths) >= 9 and min(widths) > 0  # every embedded chart decodes
    with page.expect_download() as download:
        page.get_by_role("link", name="Download “Headline numbers (Δ against cifar_standard)” as CSV").click()
    assert download.value.suggested_filename == "summary_kpis.csv"
    assert "Clean accuracy,0.9412,0.8431" in Path(download.value.path()).read_text()
    path = _screenshot_dir(tmp_path) / "report-html.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000
    page.close()
