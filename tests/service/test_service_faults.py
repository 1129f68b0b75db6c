"""Crash safety: kill -9 during concurrent submissions, restart, nothing lost or duplicated; orphans are marked."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.service.servicekit import Api, ServiceProcess, bootstrap, wait_run

SUBMISSIONS = 50


def _submit(url: str, token: str, project_id: int, i: int) -> tuple[int, str | None]:
    try:
        response = httpx.post(f"{url}/api/v1/projects/{project_id}/runs", json={"overrides": [f"seed={i}"]},
                              headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"key-{i}"},
                              timeout=30)
    except httpx.HTTPError:
        return i, None
    return i, response.json()["id"] if response.status_code in (200, 201) else None


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_during_concurrent_submissions_loses_and_duplicates_nothing(database, request, tmp_path):
    env = {"ROBUSTLIT_WORKER": "0"}  # submissions only: launching 50 jobs would just slow the test down
    if database == "postgresql":
        env["ROBUSTLIT_DATABASE_URL"] = request.getfixturevalue("fresh_postgres")
    server = ServiceProcess(tmp_path / "home", env).start()
    try:
        admin = bootstrap(server.url)
        project = admin["api"].post("/projects", json={"name": "crash"}).json()
        acknowledged: dict[int, str] = {}
        lock = threading.Lock()

        def submit(i):
            index, run_id = _submit(server.url, admin["token"], project["id"], i)
            if run_id is not None:
                with lock:
                    acknowledged[index] = run_id

        def killer():
            while len(acknowledged) < 10:
                time.sleep(0.005)
            server.kill9()

        kill_thread = threading.Thread(target=killer)
        kill_thread.start()
        with ThreadPoolExecutor(SUBMISSIONS) as pool:
            list(pool.map(submit, range(SUBMISSIONS)))
        kill_thread.join(timeout=60)
        assert server.process.returncode == -9
        assert len(acknowledged) >= 10
        server.port = ServiceProcess(tmp_path / "unused").port
        server.start()
        api = Api(server.url, admin["token"])
        for i, run_id in acknowledged.items():
            run = api.get(f"/runs/{run_id}").json()
            assert run["id"] == run_id and run["overrides"] == [f"seed={i}"]
        runs = api.get(f"/projects/{project['id']}/runs", params={"limit": 500}).json()["items"]
        seeds = [run["overrides"][0] for run in runs]
        assert len(seeds) == len(set(seeds))  # no submission stored twice
        assert {acknowledged[i] for i in acknowledged} <= {run["id"] for run in runs}
        # clients retry what was never acknowledged with the same keys: afterwards each exists exactly once
        with ThreadPoolExecutor(10) as pool:
            retried = dict(pool.map(lambda i: _submit(server.url, admin["token"], project["id"], i),
                                    range(SUBMISSIONS)))
        assert all(retried[i] == run_id for i, run_id in acknowledged.items())
        runs = api.get(f"/projects/{project['id']}/runs", params={"limit": 500}).json()["items"]
        assert sorted(run["overrides"][0] for run in runs) == sorted(f"seed={i}" for i in range(SUBMISSIONS))
        assert all(run["status"] == "queued" for run in runs)
    finally:
        server.stop()


def test_a_running_job_survives_a_service_crash_and_is_finished_after_restart(tmp_path):
    server = ServiceProcess(tmp_path / "home").start()
    try:
        admin = bootstrap(server.url)
        api = admin["api"]
        project = api.post("/projects", json={"name": "p"}).json()
        run = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["+sleep=4", "seed=3"]}).json()
        while api.get(f"/runs/{run['id']}").json()["status"] != "running":
            time.sleep(0.1)
        server.kill9()
        server.start()
        done = wait_run(Api(server.url, admin["token"]), run["id"])
        assert done["status"] == "succeeded"
        metrics = Api(server.url, admin["token"]).get(f"/runs/{run['id']}/metrics").json()["items"]
        assert [m["value"] for m in metrics if m["suite"] == "clean"] == [0.53]
    finally:
        server.stop()


def test_orphaned_launches_are_detected_and_marked(tmp_path):
    server = ServiceProcess(tmp_path / "home", {"ROBUSTLIT_WORKER": "0"}).start()
    try:
        admin = bootstrap(server.url)
        project = admin["api"].post("/projects", json={"name": "p"}).json()
        run = admin["api"].post(f"/projects/{project['id']}/runs", json={}).json()
        server.kill9()
        # the crash happened after the run was claimed and before its job was recorded
        stale = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f")
        with sqlite3.connect(server.home / "robustlit.db") as db:
            db.execute("update experiment_runs set status='starting', claimed_at=? where id=?", (stale, run["id"]))
        server.env["ROBUSTLIT_WORKER"] = "1"
        server.start()
        done = wait_run(Api(server.url, admin["token"]), run["id"])
        assert done["status"] == "failed"
        assert done["error"] == "orphaned: the service stopped while launching this run; submit it again"
        audit = Api(server.url, admin["token"]).get(f"/projects/{project['id']}/audit",
                                                    params={"action": "run.orphaned"}).json()
        assert audit["total"] == 1 and audit["items"][0]["target_id"] == run["id"]
    finally:
        server.stop()
