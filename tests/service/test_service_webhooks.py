"""Webhooks against a real loopback receiver: signed events, retries with backoff and jitter, delivery log."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from robustlit_service.worker import backoff_delay, sign

from tests.service.servicekit import wait_run


class Receiver:
    """Records POSTs; answers 500 to the first ``failures`` of them, then 204."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict, bytes, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received.append((dict(self.headers), body, time.monotonic()))
                self.send_response(500 if len(owner.received) <= owner.failures else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"got {len(self.received)} deliveries, expected {count}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(failures=0):
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for item in made:
        item.close()


def _verify(secret: str, headers: dict, body: bytes) -> bool:
    expected = hmac.new(secret.encode(), f"{headers['X-Robustlit-Timestamp']}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Robustlit-Signature"], f"sha256={expected}")


def test_run_events_are_signed_retried_and_logged(admin, module_server, receiver):
    api = admin["api"]
    sink = receiver(failures=2)
    project = api.post("/projects", json={"name": "hooks"}).json()
    hook = api.post(f"/projects/{project['id']}/webhooks", json={"url": sink.url}).json()
    assert hook["events"] == ["run_completed", "run_failed"] and len(hook["secret"]) >= 32
    ok = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["seed=1"]}).json()
    assert wait_run(api, ok["id"])["status"] == "succeeded"
    sink.wait_for(3)  # two refused attempts, then delivered
    headers, body, _ = sink.received[-1]
    assert _verify(hook["secret"], headers, body)
    assert headers["X-Robustlit-Event"] == "run_completed"
    event = json.loads(body)
    assert event["event"] == "run_completed" and event["run"]["id"] == ok["id"]
    assert event["run"]["status"] == "succeeded"
    assert len({h["X-Robustlit-Delivery"] for h, _, _ in sink.received}) == 1  # the same delivery, retried
    log = _settled_deliveries(api, hook["id"])
    assert log[0]["status"] == "succeeded" and log[0]["attempts"] == 3 and log[0]["last_status_code"] == 204
    failed = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["+fail=1"]}).json()
    wait_run(api, failed["id"])
    sink.wait_for(4)
    headers, body, _ = sink.received[-1]
    assert headers["X-Robustlit-Event"] == "run_failed" and json.loads(body)["run"]["error"].startswith("exit code 3")
    assert _verify(hook["secret"], headers, body)


def _settled_deliveries(api, hook_id: int, timeout_s: float = 10.0) -> list[dict]:
    """The delivery log once its newest entry has left ``pending``: the receiver sees the last attempt just
    before the service records its outcome."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = api.get(f"/webhooks/{hook_id}/deliveries").json()["items"]
        if log and log[0]["status"] != "pending" or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_webhook_test_endpoint_sends_a_ping_now(admin, receiver):
    api = admin["api"]
    sink = receiver()
    project = api.post("/projects", json={"name": "ping"}).json()
    hook = api.post(f"/projects/{project['id']}/webhooks",
                    json={"url": sink.url, "events": ["run_failed"], "secret": "s" * 20}).json()
    delivery = api.post("/webhooks/test", json={"webhook_id": hook["id"]}).json()
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1 and delivery["event"] == "ping"
    headers, body, _ = sink.received[0]
    assert json.loads(body) == {"event": "ping", "webhook_id": hook["id"], "project_id": project["id"]}
    assert _verify("s" * 20, headers, body)


def test_unreachable_receiver_is_retried_then_given_up(admin, module_server):
    api = admin["api"]
    project = api.post("/projects", json={"name": "dead-end"}).json()
    # a port nobody listens on: every attempt fails with a connection error
    hook = api.post(f"/projects/{project['id']}/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()
    first = api.post("/webhooks/test", json={"webhook_id": hook["id"]}).json()
    assert first["status"] == "pending" and first["attempts"] == 1 and "ConnectError" in first["last_error"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = api.get(f"/webhooks/{hook['id']}/deliveries").json()["items"][0]
        if entry["status"] == "failed":
            break
        time.sleep(0.2)
    assert entry["status"] == "failed" and entry["attempts"] == 6  # ROBUSTLIT_WEBHOOK_MAX_ATTEMPTS default


def test_backoff_grows_exponentially_with_bounded_jitter():
    rng = random.Random(0)
    for attempt in range(1, 8):
        delays = [backoff_delay(attempt, 2.0, cap=60.0, rng=rng) for _ in range(200)]
        nominal = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert all(0.5 * nominal <= d < 1.5 * nominal for d in delays)
        assert len(set(delays)) == 200  # jittered, so retries of many deliveries spread out


def test_signature_is_hmac_sha256_of_timestamp_and_body():
    expected = hmac.new(b"key", b"123.{}", hashlib.sha256).hexdigest()
    assert sign("key", "123", b"{}") == f"sha256={expected}"
