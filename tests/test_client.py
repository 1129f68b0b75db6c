"""robustlit.client: retries with backoff on 5xx/429, automatic idempotency keys, errors, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from robustlit.client import ApiError, Client, RunFailedError
from robustlit.errors import RobustlitError


class Scripted:
    """A loopback HTTP server answering from a script of (status, headers, body) and recording requests."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = owner.script.pop(0) if owner.script else (500, {}, {})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _error(code, message):
    return {"error": {"code": code, "message": message, "details": None, "request_id": "r"}}


RUN = {"id": "abc", "status": "queued", "project_id": 1}


def test_launch_retries_5xx_and_429_with_one_idempotency_key():
    script = [(503, {}, _error("unavailable", "busy")), (429, {"Retry-After": "0"}, _error("rate_limited", "slow")),
              (201, {}, RUN)]
    with Scripted(script) as server, Client(api_key="rlk_test", base_url=server.url, backoff=0.01) as client:
        assert client.launch_train(1, overrides=["data=digits"], recipe="baseline") == RUN
    assert len(server.requests) == 3
    methods_paths = {(method, path) for method, path, _, _ in server.requests}
    assert methods_paths == {("POST", "/api/v1/projects/1/runs")}
    keys = {headers["Idempotency-Key"] for _, _, headers, _ in server.requests}
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert all(headers["Authorization"] == "Bearer rlk_test" for _, _, headers, _ in server.requests)
    assert json.loads(server.requests[0][3]) == {"overrides": ["data=digits"], "recipe": "baseline"}


def test_each_launch_gets_its_own_idempotency_key():
    with Scripted([(201, {}, RUN), (201, {}, RUN)]) as server, Client(api_key="k", base_url=server.url) as client:
        client.launch_eval(1, model_id=3)
        client.launch_eval(1, model_id=3)
    first, second = (headers["Idempotency-Key"] for _, _, headers, _ in server.requests)
    assert first != second
    assert json.loads(server.requests[0][3]) == {"project_id": 1, "overrides": [], "model_id": 3}


def test_client_errors_are_not_retried_and_keep_the_services_message():
    script = [(403, {}, _error("forbidden", "you are not a member of project 1"))]
    with (Scripted(script) as server, Client(api_key="k", base_url=server.url, backoff=0.01) as client,
          pytest.raises(ApiError, match="403 forbidden: you are not a member of project 1") as caught):
        client.metrics("abc")
    assert caught.value.status == 403 and caught.value.code == "forbidden"
    assert len(server.requests) == 1


def test_gives_up_after_max_retries():
    script = [(502, {}, _error("bad_gateway", "down"))] * 3
    with (Scripted(script) as server, Client(api_key="k", base_url=server.url, max_retries=2, backoff=0.01) as c,
          pytest.raises(ApiError, match="502 bad_gateway: down")):
        c.run("abc")
    assert len(server.requests) == 3


def test_wait_polls_until_finished_and_raises_on_failure():
    failed = {**RUN, "status": "failed", "error": "exit code 2: boom"}
    script = [(200, {}, {**RUN, "status": "running"}), (200, {}, failed)]
    with (Scripted(script) as server, Client(api_key="k", base_url=server.url) as client,
          pytest.raises(RunFailedError, match="run abc failed: exit code 2: boom")):
        client.wait("abc", poll=0.01)
    running = [(200, {}, {**RUN, "status": "running"})] * 50
    with (Scripted(running) as server, Client(api_key="k", base_url=server.url) as client,
          pytest.raises(TimeoutError, match="run abc still running")):
        client.wait("abc", timeout=0.05, poll=0.01)


def test_metrics_and_artifacts_return_items():
    metric = {"suite": "clean", "name": "accuracy", "value": 0.9, "context": {}}
    artifact = {"name": "job.log", "type": "log", "size": 3, "download_url": "/api/v1/runs/abc/artifacts/job.log"}
    script = [(200, {}, {"items": [metric]}), (200, {}, {"items": [artifact]})]
    with Scripted(script) as server, Client(api_key="k", base_url=server.url) as client:
        assert client.metrics("abc", suite="clean") == [metric]
        assert client.artifacts("abc") == [artifact]
    assert server.requests[0][1] == "/api/v1/runs/abc/metrics?suite=clean"


def test_needs_an_api_key(monkeypatch):
    monkeypatch.delenv("ROBUSTLIT_API_KEY", raising=False)
    with pytest.raises(RobustlitError, match=r"Client needs api_key="):
        Client(base_url="http://127.0.0.1:1")


def test_importing_the_client_and_the_service_does_not_import_torch():
    code = ("import sys, robustlit.client, robustlit_service.app, robustlit_service.worker; "
            "print('torch' in sys.modules, 'lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_download_writes_the_exact_bytes_of_a_json_artifact(tmp_path):
    with Scripted([(200, {}, {"schema_version": 1})]) as server, Client(api_key="k", base_url=server.url) as client:
        path = client.download("abc", "robustness_report.json", tmp_path)
    assert path == tmp_path / "robustness_report.json"
    assert path.read_bytes() == json.dumps({"schema_version": 1}).encode()
    assert server.requests[0][1] == "/api/v1/runs/abc/artifacts/robustness_report.json"
