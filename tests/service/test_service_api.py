"""The REST API against a real server: projects, runs through the launcher, results, errors, idempotency."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from tests.service.servicekit import Api, bootstrap, wait_run


@pytest.fixture(scope="module")
def project(admin):
    response = admin["api"].post("/projects", json={"name": "vision", "description": "robust CNNs"})
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "admin"
    return response.json()


def test_train_run_succeeds_and_its_report_is_ingested(admin, project, module_server):
    api = admin["api"]
    created = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["data=digits", "seed=7"]})
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "queued" and run["kind"] == "train" and run["overrides"] == ["data=digits", "seed=7"]
    done = wait_run(api, run["id"])
    assert done["status"] == "succeeded", done
    assert done["started_at"] <= done["finished_at"]
    metrics = api.get(f"/runs/{run['id']}/metrics").json()["items"]
    by_key = {(m["suite"], m["name"]): m for m in metrics}
    assert by_key[("clean", "accuracy")]["value"] == pytest.approx(0.57)  # fake job: 0.5 + seed/100
    assert by_key[("adversarial", "robust_accuracy")]["context"] == {"attack": "pgd", "norm": "Linf", "eps": 0.0313725}
    only_clean = api.get(f"/runs/{run['id']}/metrics", params={"suite": "clean"}).json()["items"]
    assert [m["name"] for m in only_clean] == ["accuracy"]
    artifacts = {a["name"]: a for a in api.get(f"/runs/{run['id']}/artifacts").json()["items"]}
    assert set(artifacts) == {"job.log", "robustness_report.json", "plots/curve.png", "elsewhere.ckpt"}
    assert artifacts["elsewhere.ckpt"]["download_url"] is None  # outside the run folder: listed, not served
    png = api.get(artifacts["plots/curve.png"]["download_url"].removeprefix("/api/v1"))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert png.headers["content-type"] == "image/png"
    assert artifacts["plots/curve.png"]["size"] == len(png.content)
    log = api.get(artifacts["job.log"]["download_url"].removeprefix("/api/v1")).text
    assert "fake job done" in log
    report = api.get(f"/runs/{run['id']}/report").json()
    assert report["schema_version"] == 1 and report["metrics"][0]["value"] == pytest.approx(0.57)
    logs = api.get(f"/runs/{run['id']}/logs", params={"offset": 0})
    assert "fake job starting" in logs.text
    assert int(logs.headers["X-Log-Offset"]) == len(logs.text)
    assert api.get(f"/runs/{run['id']}/logs", params={"offset": len(logs.text)}).text == ""


def test_failed_job_reports_its_error(admin, project):
    api = admin["api"]
    run = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["+fail=1"]}).json()
    done = wait_run(api, run["id"])
    assert done["status"] == "failed"
    assert done["error"] == "exit code 3: fake-job: error: asked to fail"
    assert api.get(f"/runs/{run['id']}/metrics").json()["items"] == []
    assert api.get(f"/runs/{run['id']}/report").json()["error"]["code"] == "not_found"


def test_cancel_stops_the_running_job(admin, project, module_server):
    api = admin["api"]
    run = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["+sleep=60"]}).json()
    for _ in range(300):
        if api.get(f"/runs/{run['id']}").json()["status"] == "running":
            break
        import time

        time.sleep(0.1)
    canceled = api.post(f"/runs/{run['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    again = api.post(f"/runs/{run['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["message"] == f"run {run['id']} already canceled"
    from robustlit_launcher import JobStatus, get_backend

    backend = get_backend("local", root=module_server.home / "jobs")
    handles = [job.name for job in (module_server.home / "jobs").iterdir()
               if run["id"] in (job / "job.json").read_text()]
    assert len(handles) == 1 and backend.status(handles[0]) is JobStatus.CANCELED


def test_idempotency_key_returns_the_same_run_and_refuses_a_different_body(admin, project):
    api = admin["api"]
    path = f"/projects/{project['id']}/runs"
    headers = {"Idempotency-Key": "submit-42"}
    first = api.post(path, json={"overrides": ["seed=1"]}, headers=headers)
    second = api.post(path, json={"overrides": ["seed=1"]}, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    other = api.post(path, json={"overrides": ["seed=2"]}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    wait_run(api, first.json()["id"])


def test_seeds_create_one_run_each_in_a_group(admin, project):
    api = admin["api"]
    first = api.post(f"/projects/{project['id']}/runs", json={"seeds": [3, 4], "name": "sweep"}).json()
    group = api.get(f"/projects/{project['id']}/runs", params={"group_id": first["group_id"]}).json()
    assert group["total"] == 2
    assert sorted((r["name"], r["seed"]) for r in group["items"]) == [("sweep-seed3", 3), ("sweep-seed4", 4)]
    for run in group["items"]:
        assert wait_run(api, run["id"])["status"] == "succeeded"
    values = sorted(api.get(f"/runs/{r['id']}/metrics", params={"suite": "clean"}).json()["items"][0]["value"]
                    for r in group["items"])
    assert values == pytest.approx([0.53, 0.54])


def test_stored_recipe_expands_into_overrides(admin, project, module_server):
    api = admin["api"]
    recipe = api.post(f"/projects/{project['id']}/recipes",
                      json={"name": "fast", "base": "mixup", "overrides": ["trainer=debug"]})
    assert recipe.status_code == 201 and recipe.json()["version"] == 1
    v2 = api.post(f"/projects/{project['id']}/recipes", json={"name": "fast", "overrides": ["seed=9"]}).json()
    assert v2["version"] == 2
    latest = api.get(f"/projects/{project['id']}/recipes", params={"latest": True}).json()
    assert [(r["name"], r["version"]) for r in latest["items"]] == [("fast", 2)]
    run = api.post(f"/projects/{project['id']}/runs", json={"recipe": "fast:1", "overrides": ["seed=5"]}).json()
    wait_run(api, run["id"])
    report = api.get(f"/runs/{run['id']}/report").json()
    argv = report["run"]["config"]["argv"]
    assert argv[:3] == ["recipe=mixup", "trainer=debug", "seed=5"]
    assert argv[-1] == f"hydra.run.dir={module_server.home / 'runs' / run['id']}"
    bad = api.post(f"/projects/{project['id']}/runs", json={"recipe": "nope"})
    assert bad.status_code == 422 and "neither a stored recipe" in bad.json()["error"]["message"]


def test_templates_come_from_conf_recipe(admin):
    templates = {t["name"]: t for t in admin["api"].get("/recipes/templates").json()["items"]}
    assert {"baseline", "mixup", "pgd_at"} <= set(templates)
    mixup = templates["mixup"]
    assert "@package _global_" in mixup["content"]
    assert mixup["description"] == yaml.safe_load(mixup["content"]).get("recipe_description", "Mixup on every batch.")


def test_list_runs_paginates_and_filters(admin, project):
    api = admin["api"]
    everything = api.get(f"/projects/{project['id']}/runs", params={"limit": 500}).json()
    page = api.get(f"/projects/{project['id']}/runs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == everything["total"] and page["limit"] == 2 and page["offset"] == 1
    assert [r["id"] for r in page["items"]] == [r["id"] for r in everything["items"][1:3]]
    failed = api.get(f"/projects/{project['id']}/runs", params={"status": "failed"}).json()
    assert failed["total"] >= 1 and all(r["status"] == "failed" for r in failed["items"])


def test_catalog_crud_and_model_versions(admin, project):
    api = admin["api"]
    pid = project["id"]
    dataset = api.post(f"/projects/{pid}/datasets", json={"name": "digits", "uri": "builtin:digits"}).json()
    assert api.post(f"/projects/{pid}/datasets", json={"name": "digits"}).status_code == 409
    patched = api.patch(f"/projects/{pid}/datasets/{dataset['id']}", json={"description": "sklearn digits"})
    assert patched.json()["description"] == "sklearn digits"
    v1 = api.post(f"/projects/{pid}/models", json={"name": "cnn", "uri": "/models/a.pt"}).json()
    v2 = api.post(f"/projects/{pid}/models", json={"name": "cnn", "uri": "/models/b.pt"}).json()
    assert (v1["version"], v2["version"]) == (1, 2)
    listed = api.get(f"/projects/{pid}/models", params={"name": "cnn"}).json()
    assert [m["version"] for m in listed["items"]] == [2, 1]
    evaluation = api.post("/evaluate", json={"project_id": pid, "model_id": v2["id"], "overrides": ["seed=2"]})
    assert evaluation.status_code == 201 and evaluation.json()["kind"] == "evaluate"
    done = wait_run(api, evaluation.json()["id"])
    argv = api.get(f"/runs/{done['id']}/report").json()["run"]["config"]["argv"]
    assert argv[0] == "model.checkpoint=/models/b.pt"
    assert api.delete(f"/projects/{pid}/models/{v2['id']}").status_code == 409  # used by a run
    assert api.delete(f"/projects/{pid}/datasets/{dataset['id']}").status_code == 204
    assert api.get(f"/projects/{pid}/datasets/{dataset['id']}").status_code == 404


@pytest.mark.parametrize("name, code", [
    ("%2E%2E/%2E%2E/%2E%2E/secret_key", "invalid_artifact_name"),
    ("..%2F..%2F..%2Fsecret_key", "invalid_artifact_name"),
    ("%2Fetc%2Fpasswd", "invalid_artifact_name"),
    ("plots/%2E%2E/%2E%2E/%2E%2E/secret_key", "invalid_artifact_name"),
    ("plots/other.png", "not_found"),
])
def test_artifact_download_cannot_leave_the_run_folder(admin, project, module_server, name, code):
    api = admin["api"]
    run = api.get(f"/projects/{project['id']}/runs", params={"status": "succeeded", "limit": 1}).json()["items"][0]
    response = api.get(f"/runs/{run['id']}/artifacts/{name}")
    assert response.status_code == (400 if code == "invalid_artifact_name" else 404)
    assert response.json()["error"]["code"] == code
    assert (module_server.home / "secret_key").read_text() not in response.text


@pytest.mark.parametrize("body, message", [
    ({"overrides": ["--multirun"]}, "is not a Hydra override"),
    ({"overrides": ["hydra.run.dir=/tmp/x"]}, "hydra.run.dir is set by the service"),
    ({"overrides": ["data=nope"]}, "unknown data option 'nope'"),
    ({"overrides": "data=digits"}, "overrides"),
    ({"seeds": [-1]}, "seeds"),
    ({"unknown": 1}, "unknown"),
])
def test_malformed_input_gets_the_json_error_shape(admin, project, body, message):
    response = admin["api"].post(f"/projects/{project['id']}/runs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and message in error["message"] + json.dumps(error["details"])
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_unparseable_json_and_unknown_routes(admin, module_server):
    raw = httpx.post(f"{module_server.url}/api/v1/projects", content=b"{not json",
                     headers={"Authorization": f"Bearer {admin['token']}", "Content-Type": "application/json"})
    assert raw.status_code == 422 and raw.json()["error"]["code"] == "invalid_request"
    missing = admin["api"].get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert admin["api"].get("/runs/" + "f" * 40).status_code == 404
    assert admin["api"].get("/projects/99999999999").status_code == 422


def test_health_readiness_and_prometheus_metrics(module_server, admin):
    assert httpx.get(f"{module_server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{module_server.url}/readyz").json()
    assert ready == {"status": "ready", "checks": {"database": "ok"}}
    text = httpx.get(f"{module_server.url}/metrics").text
    assert 'robustlit_jobs_total{outcome="succeeded"}' in text
    assert "robustlit_http_request_duration_seconds_bucket" in text
    assert 'robustlit_queue_depth{status="queued"}' in text
    assert 'route="/runs/{run_id}"' in text  # the route template, not the raw path


def test_logs_are_json_lines_with_request_and_run_ids(module_server, admin):
    lines = [json.loads(line) for line in module_server.log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("path", "").startswith("/api/v1/")]
    assert requests and all(len(line["request_id"]) == 32 for line in requests)
    assert any(line["run_id"] and line["message"] == "run succeeded" for line in lines)


def test_queue_limit_refuses_with_429_and_retry_after(service_factory):
    server = service_factory(env={"ROBUSTLIT_PROJECT_QUEUE_LIMIT": "2", "ROBUSTLIT_MAX_RUNNING": "1"})
    api = bootstrap(server.url)["api"]
    pid = api.post("/projects", json={"name": "p"}).json()["id"]
    runs = [api.post(f"/projects/{pid}/runs", json={"overrides": ["+sleep=30"]}) for _ in range(2)]
    assert [r.status_code for r in runs] == [201, 201]
    refused = api.post(f"/projects/{pid}/runs", json={"overrides": []})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "queue_full"
    for run in runs:
        api.post(f"/runs/{run.json()['id']}/cancel")


def test_rate_limit_per_api_key(service_factory):
    server = service_factory(env={"ROBUSTLIT_RATE_LIMIT": "5", "ROBUSTLIT_RATE_WINDOW": "60"})
    admin = bootstrap(server.url)
    keyed = Api(server.url, admin["key"])
    codes = [keyed.get("/projects").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    refused = keyed.get("/projects")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limited"


def test_serve_starts_with_zero_configuration(tmp_path):
    import os
    import subprocess
    import time

    from tests.service.servicekit import ROBUSTLIT, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLIT_")}
    process = subprocess.Popen([str(ROBUSTLIT), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"
        home = tmp_path / ".robustlit"
        assert (home / "robustlit.db").is_file() and (home / "robustlit.db-wal").exists()
        assert (home / "secret_key").stat().st_mode & 0o777 == 0o600
    finally:
        process.terminate()
        process.wait(timeout=30)
