"""The dashboard's API source against the real service: ``robustlit serve`` on loopback, with the service tests'
stand-in job (``tests/service/fake_job.py``) in place of training.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from robustlit_dashboard.forms import validate_recipe
from robustlit_dashboard.sources import ApiSource

ROBUSTLIT = Path(sys.executable).with_name("robustlit")
FAKE_JOB = Path(__file__).parent / "service" / "fake_job.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A fresh service with an admin, an API key and a project."""
    if not FAKE_JOB.is_file() or "serve" not in subprocess.run([str(ROBUSTLIT), "--help"], capture_output=True,
                                                                 text=True).stdout:
        pytest.skip("the service (robustlit serve) and its stand-in job are not in this checkout")
    home = tmp_path_factory.mktemp("service")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "ROBUSTLIT_TRAIN_COMMAND": f"{sys.executable} {FAKE_JOB}",
           "ROBUSTLIT_EVAL_COMMAND": f"{sys.executable} {FAKE_JOB}", "ROBUSTLIT_POLL_INTERVAL": "0.1"}
    log = (home / "server.log").open("wb")
    process = subprocess.Popen([str(ROBUSTLIT), "serve", "--port", str(port), "--home", str(home)], cwd=home, env=env,
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"robustlit serve did not become ready:\n{(home / 'server.log').read_text()[-2000:]}")
    user = {"email": "admin@example.com", "password": "correct-horse"}
    assert httpx.post(f"{url}/api/v1/users", json=user, timeout=30).status_code == 201
    token = httpx.post(f"{url}/api/v1/auth/token", timeout=30, data={
        "grant_type": "password", "username": user["email"], "password": user["password"]}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    key = httpx.post(f"{url}/api/v1/api-keys", json={"name": "dashboard"}, headers=headers, timeout=30).json()["key"]
    project = httpx.post(f"{url}/api/v1/projects", json={"name": "vision"}, headers=headers, timeout=30).json()
    yield url, key, project
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_api_source_follows_a_run_on_the_real_service(service):
    url, key, project = service
    source = ApiSource(url, key)
    assert [p["name"] for p in source.projects()] == ["vision"]
    templates = source.templates()
    assert {"baseline", "pgd_at"} <= {t["name"] for t in templates}
    body = validate_recipe("name: fast\nbase: baseline\noverrides: [trainer.max_epochs=1]", [t["name"] for t in
                                                                                            templates])
    saved = source.create(project["id"], "recipes", body)
    assert (saved["name"], saved["version"]) == ("fast", 1)
    dataset = source.create(project["id"], "datasets", {"name": "digits-local", "uri": "/data/digits",
                                                        "description": ""})
    assert [d["name"] for d in source.registry(project["id"], "datasets")] == [dataset["name"]]
    run = source.submit(project["id"], {"recipe": "fast:1", "overrides": ["data=digits"], "seeds": [2],
                                        "name": "from-dashboard"})
    deadline = time.monotonic() + 120
    while source.run(run.id).active and time.monotonic() < deadline:
        time.sleep(0.3)
    assert source.run(run.id).status == "succeeded"
    runs, total = source.runs()
    assert total == 1 and runs[0].name == "from-dashboard"
    report = source.report(run.id)
    assert report.find("clean", "accuracy")[0].value == 0.52  # the stand-in job's 0.5 + seed / 100
    log = source.logs(run.id, 0)
    assert "fake job starting" in log.text and log.next_offset >= len(log.text)
    assert source.logs(run.id, log.next_offset).text == ""
    assert [plot.name for plot in source.plots(run.id)] == ["curve.png"]
    assert source.share_link(run.id) == f"{url}/api/v1/runs/{run.id}/report"
