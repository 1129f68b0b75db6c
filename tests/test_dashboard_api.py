"""Dashboard pages on the service API: a real HTTP server on loopback serves the documented /api/v1 endpoints.

The server answers from the report fixtures with the shapes of the service's schemas (``Page``/``Items``
wrappers, ``RunOut``, ``ArtifactOut``, plain-text logs with ``X-Log-Offset``/``X-Run-Status``, the one error
shape), checks the bearer key, and records what the dashboard posts, so the tests assert the requests the pages
send as well as what they show.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from robustlit_dashboard.sources import ApiSource, SourceError
from streamlit.testing.v1 import AppTest

from robustlit.cli.app import config_dir

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
VIEWS = Path(__file__).resolve().parents[1] / "dashboard" / "robustlit_dashboard" / "views"
KEY = "rl_test_0123456789abcdef"
LOG_LINES = [f"Epoch {i}/3 train/loss: {1.0 / (i + 1):.3f}\n" for i in range(3)]


class FakeService:
    """In-memory state behind the loopback server (one project, three finished runs, one running)."""

    def __init__(self) -> None:
        self.reports = {
            f"run{i}": json.loads((FIXTURES / name / "robustness_report.json").read_text())
            for i, name in enumerate(["cifar_standard", "cifar_pgd_at", "digits_clean_only"], start=1)
        }
        self.runs = {
            run_id: self._run(run_id, report["run"]["name"], "succeeded", report["run"]["finished_at"])
            for run_id, report in self.reports.items()
        }
        self.runs["run4"] = self._run("run4", "still_training", "running", "2026-11-22T08:00:00Z")
        self.log_calls = 0
        self.registry: dict[str, list[dict]] = {
            "datasets": [{"id": 1, "project_id": 1, "name": "cifar10-c", "uri": "/data/cifar10c", "description": "",
                          "created_at": "2026-11-20T00:00:00Z"}],
            "models": [{"id": 1, "project_id": 1, "name": "resnet18", "version": 2, "uri": "/models/r18-v2.pt",
                        "description": "AT", "source_run_id": None, "created_at": "2026-11-20T00:00:00Z"}],
            "recipes": [],
        }
        self.posted: list[tuple[str, dict]] = []

    @staticmethod
    def _run(run_id: str, name: str, status: str, created: str) -> dict:
        return {"id": run_id, "project_id": 1, "group_id": run_id, "name": name, "kind": "evaluate",
                "status": status, "recipe": None, "overrides": [], "seed": 0, "model_id": None, "error": None,
                "created_at": created, "started_at": created, "finished_at": None}


def _handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes | dict | list, content_type: str = "application/json",
                  headers: dict | None = None) -> None:
            data = json.dumps(body).encode() if isinstance(body, dict | list) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": {"code": code, "message": message, "details": None, "request_id": "r"}})

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                self._error(401, "unauthorized", "missing or invalid credentials")
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not self._authorized():
                return
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p][2:]  # drop api, v1
            query = parse_qs(url.query)
            if parts == ["projects"]:
                return self._send(200, {"items": [{"id": 1, "name": "vision", "description": "", "role": "admin",
                                                   "created_at": "2026-11-01T00:00:00Z"}],
                                        "total": 1, "limit": 50, "offset": 0})
            if parts == ["recipes", "templates"]:
                return self._send(200, {"items": [
                    {"name": p.stem, "description": _description(p.read_text()), "content": p.read_text()}
                    for p in sorted((config_dir() / "recipe").glob("*.yaml"))]})
            if len(parts) == 3 and parts[:2] == ["projects", "1"]:
                if parts[2] == "runs":
                    items = sorted(service.runs.values(), key=lambda r: r["created_at"], reverse=True)
                    limit, offset = int(query.get("limit", ["50"])[0]), int(query.get("offset", ["0"])[0])
                    return self._send(200, {"items": items[offset:offset + limit], "total": len(items),
                                            "limit": limit, "offset": offset})
                if parts[2] in service.registry:
                    items = service.registry[parts[2]]
                    return self._send(200, {"items": items, "total": len(items), "limit": 200, "offset": 0})
            if len(parts) >= 2 and parts[0] == "runs":
                run = service.runs.get(parts[1])
                if run is None:
                    return self._error(404, "not_found", f"run {parts[1]} does not exist")
                tail = parts[2:]
                if not tail:
                    return self._send(200, run)
                if tail == ["report"]:
                    if parts[1] not in service.reports:
                        return self._error(404, "not_found", f"run {parts[1]} has no report (status: running)")
                    return self._send(200, service.reports[parts[1]])
                if tail == ["metrics"]:
                    return self._send(200, {"items": service.reports.get(parts[1], {}).get("metrics", [])})
                if tail == ["artifacts"]:
                    folder = _folder(service, parts[1])
                    return self._send(200, {"items": [
                        {"name": p.name, "type": "plot", "size": p.stat().st_size,
                         "download_url": f"/api/v1/runs/{parts[1]}/artifacts/{p.name}"}
                        for p in sorted(folder.glob("*.png"))] if folder else []})
                if len(tail) == 2 and tail[0] == "artifacts":
                    folder = _folder(service, parts[1])
                    if folder is None or not (folder / tail[1]).is_file():
                        return self._error(404, "not_found", f"artifact {tail[1]!r} does not exist")
                    return self._send(200, (folder / tail[1]).read_bytes(), "image/png")
                if tail == ["logs"]:
                    service.log_calls += 1
                    offset = int(query.get("offset", ["0"])[0])
                    text = "".join(LOG_LINES[:min(len(LOG_LINES), service.log_calls)])
                    return self._send(200, text[offset:].encode(), "text/plain; charset=utf-8",
                                      {"X-Log-Offset": str(len(text)), "X-Run-Status": run["status"]})
            return self._error(404, "not_found", f"no route {url.path}")

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            if not self._authorized():
                return
            parts = [p for p in urlparse(self.path).path.split("/") if p][2:]
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            service.posted.append(("/".join(parts), body))
            if len(parts) == 3 and parts[:2] == ["projects", "1"] and parts[2] in service.registry:
                allowed = {"datasets": {"name", "uri", "description"},
                           "models": {"name", "uri", "description", "source_run_id"},
                           "recipes": {"name", "base", "overrides", "description"}}[parts[2]]
                if set(body) - allowed:
                    return self._error(422, "invalid_request", f"unknown fields {sorted(set(body) - allowed)}")
                items = service.registry[parts[2]]
                created = {"id": len(items) + 1, "project_id": 1, **body, "created_at": "2026-11-27T00:00:00Z"}
                if parts[2] != "datasets":
                    created["version"] = 1 + sum(item["name"] == body["name"] for item in items)
                items.append(created)
                return self._send(201, created)
            if parts == ["projects", "1", "runs"]:
                if set(body) - {"recipe", "overrides", "seeds", "name"}:
                    return self._error(422, "invalid_request", "unknown fields")
                run = FakeService._run(f"run{len(service.runs) + 1}", body.get("name") or "launched", "queued",
                                       "2026-11-27T10:00:00Z")
                service.runs[run["id"]] = run
                return self._send(201, run)
            return self._error(404, "not_found", "no route")

    return Handler


def _description(content: str) -> str:
    return next((line.lstrip("# ").strip() for line in content.splitlines()
                 if line.startswith("#") and "@package" not in line), "")


def _folder(service: FakeService, run_id: str) -> Path | None:
    report = service.reports.get(run_id)
    return FIXTURES / report["run"]["name"] if report else None


@pytest.fixture
def api(monkeypatch):
    """The loopback server, with the dashboard's environment pointing at it."""
    service = FakeService()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.delenv("ROBUSTLIT_DASHBOARD_RUNS", raising=False)
    monkeypatch.setenv("ROBUSTLIT_API_URL", url)
    monkeypatch.setenv("ROBUSTLIT_API_KEY", KEY)
    yield service, url
    server.shutdown()
    server.server_close()
    thread.join()


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=120)


def test_api_source_reads_runs_reports_plots_and_logs(api):
    service, url = api
    source = ApiSource(url, KEY)
    runs, total = source.runs()
    assert total == 4 and runs[0].name == "still_training" and runs[0].active
    assert source.report("run4") is None  # still running: no report yet
    report = source.report("run2")
    assert report.run.name == "cifar_pgd_at"
    assert report.find("clean", "accuracy")[0].value == service.reports["run2"]["metrics"][0]["value"]
    plots = source.plots("run1")
    assert [p.name for p in plots] == ["ood_roc.png", "ood_score_histogram.png"]
    assert plots[0].png[:8] == b"\x89PNG\r\n\x1a\n" and "ROC curve" in plots[0].alt  # alt text from the PNG
    first = source.logs("run4", 0)
    second = source.logs("run4", first.next_offset)
    assert first.text == LOG_LINES[0] and second.text == LOG_LINES[1] and second.status == "running"
    assert source.share_link("run2") == f"{url}/api/v1/runs/run2/report"


def test_api_errors_are_one_line_messages(api):
    _, url = api
    with pytest.raises(SourceError, match="401: missing or invalid credentials"):
        ApiSource(url, "wrong").projects()
    with pytest.raises(SourceError, match="404: run nope does not exist"):
        ApiSource(url, KEY).run("nope")
    with pytest.raises(SourceError, match="cannot reach http://127.0.0.1:9"):
        ApiSource("http://127.0.0.1:9", KEY, timeout=2).projects()
    with pytest.raises(SourceError, match="must be an http"):
        ApiSource("localhost:8000", KEY)


def test_overview_on_the_api_flags_the_regression(api):
    at = _page("overview").run()
    assert not at.exception
    assert at.selectbox[0].value == "cifar_standard"  # the run named like a baseline
    assert not at.error  # the adversarially trained run is more robust, not less
    at.selectbox[0].set_value("cifar_pgd_at").run()
    assert "more than 5% below cifar_pgd_at's" in at.error[0].value
    regressions = at.table[0].value
    assert set(regressions["run"]) == {"cifar_standard"} and len(regressions) == 4  # pgd×3 + autoattack
    recent = at.table[1].value
    assert list(recent["run"]) == ["still_training", "digits_clean_only", "cifar_pgd_at", "cifar_standard"]
    assert list(recent["status"])[0] == "running"


def test_run_detail_tails_the_log_of_a_running_run(api):
    service, _ = api
    at = _page("run_detail").run()
    assert not at.exception
    assert at.selectbox[0].value == 0 and "running" in at.markdown[0].value
    assert LOG_LINES[0].strip() in at.code[0].value
    at.run()  # the fragment asks again from the new offset
    assert LOG_LINES[1].strip() in at.code[0].value and service.log_calls >= 2


def test_run_detail_shows_plots_downloaded_through_the_api(api):
    at = _page("run_detail")
    at.query_params["run"] = "run1"
    at.run()
    assert not at.exception
    images = at.get("image")
    alts = [image.proto.imgs[0].alt for image in images]
    assert any("ROC curve of the energy detector for cifar_standard" in alt for alt in alts)
    assert any(alt.startswith("Heatmap of corruption error") for alt in alts)


def test_recipe_builder_validates_then_saves_through_the_api(api):
    service, _ = api
    at = _page("recipe_builder").run()
    assert not at.exception
    at.text_input[0].set_value("at_short")
    at.selectbox[1].set_value("pgd_at")
    at.text_area[0].set_value("trainer.max_epochs=3\ndata=nope")
    at.button[0].click().run()  # Write YAML
    assert "base: pgd_at" in at.text_area[1].value and "- data=nope" in at.text_area[1].value
    at.button[1].click().run()  # Validate
    assert "unknown data option 'nope'" in at.error[0].value
    assert not service.posted
    at.text_area[1].set_value(at.text_area[1].value.replace("- data=nope", "- data=digits"))
    at.button[2].click().run()  # Save
    assert not at.error, [e.value for e in at.error]
    assert "Saved at_short version 1" in at.success[0].value
    assert service.posted == [("projects/1/recipes", {"name": "at_short", "base": "pgd_at", "description": "",
                                                      "overrides": ["trainer.max_epochs=3", "data=digits"]})]


def test_launcher_submits_model_dataset_recipe_and_seeds(api):
    service, _ = api
    at = _page("launcher").run()
    assert not at.exception
    models = at.selectbox[1].options
    assert "registered: resnet18 v2" in models
    at.selectbox[1].set_value("registered: resnet18 v2")
    at.selectbox[2].set_value("built-in: digits")
    at.selectbox[3].set_value("baseline")
    at.text_input[0].set_value("0-2")
    at.text_input[1].set_value("sweep")
    at.text_area[0].set_value("trainer=debug")
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert "Launched run sweep" in at.success[0].value and "3 seed(s)" in at.success[0].value
    assert service.posted == [("projects/1/runs", {
        "recipe": "baseline", "seeds": [0, 1, 2], "name": "sweep",
        "overrides": ["data=digits", "model=checkpoint", "model.checkpoint=/models/r18-v2.pt", "trainer=debug"]})]
    texts = [markdown.value for markdown in at.markdown]
    assert "**sweep** (run5)" in texts and "**Status:** queued (refreshing every 2 s)" in texts


def test_registry_lists_versions_and_registers_a_dataset(api):
    service, _ = api
    at = _page("registry").run()
    assert not at.exception
    models = at.table[1].value
    assert list(models["name"]) == ["resnet18"] and list(models["version"]) == ["2"]
    at.text_input(key="datasets-name").set_value("svhn")
    at.text_input(key="datasets-uri").set_value("/data/svhn")
    at.button[0].click().run()
    assert "Registered svhn." in at.success[0].value
    assert service.posted == [("projects/1/datasets", {"name": "svhn", "uri": "/data/svhn", "description": ""})]
    assert list(at.table[0].value["name"]) == ["cifar10-c", "svhn"]


def test_reports_page_offers_api_share_links(api):
    _, url = api
    at = _page("reports").run()
    assert not at.exception
    codes = [code.value for code in at.code]
    assert f"{url}/api/v1/runs/run2/report" in codes
