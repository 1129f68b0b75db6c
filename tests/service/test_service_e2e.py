"""End to end through robustlit.client: user, project, recipe, launch, wait, metrics, artifacts (SQLite, PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from robustlit.client import Client
from tests.service.servicekit import bootstrap

BACKENDS = ["sqlite", "postgresql"]


def _database_env(kind: str, request) -> dict[str, str]:
    if kind == "sqlite":
        return {}
    return {"ROBUSTLIT_DATABASE_URL": request.getfixturevalue("fresh_postgres")}


def _setup(server):
    admin = bootstrap(server.url)
    api = admin["api"]
    project = api.post("/projects", json={"name": "e2e"}).json()
    recipe = api.post(f"/projects/{project['id']}/recipes",
                      json={"name": "smoke", "base": "baseline", "overrides": ["data=digits", "trainer=debug"]})
    assert recipe.status_code == 201, recipe.text
    return admin, project


@pytest.mark.parametrize("database", BACKENDS)
def test_fast_job_end_to_end(database, request, service_factory, tmp_path):
    server = service_factory(env=_database_env(database, request))
    admin, project = _setup(server)
    with Client(api_key=admin["key"], base_url=server.url) as client:
        run = client.launch_train(project["id"], recipe="smoke", overrides=["seed=20"])
        done = client.wait(run["id"], timeout=120, poll=0.2)
        assert done["status"] == "succeeded"
        assert {(m["suite"], m["name"], m["value"]) for m in client.metrics(run["id"])} == {
            ("clean", "accuracy", 0.7), ("adversarial", "robust_accuracy", 0.25)}
        names = {a["name"] for a in client.artifacts(run["id"])}
        assert {"job.log", "robustness_report.json", "plots/curve.png"} <= names
        saved = client.download(run["id"], "robustness_report.json", tmp_path)
        assert client.report(run["id"])["metrics"][0]["value"] == 0.7
        assert json.loads(saved.read_text()) == client.report(run["id"])


@pytest.mark.slow
@pytest.mark.parametrize("database", BACKENDS)
def test_real_training_end_to_end(database, request, service_factory):
    env = {**_database_env(database, request), "ROBUSTLIT_TRAIN_COMMAND": "", "ROBUSTLIT_EVAL_COMMAND": ""}
    server = service_factory(env=env)
    admin, project = _setup(server)
    with Client(api_key=admin["key"], base_url=server.url) as client:
        run = client.launch_train(project["id"], recipe="smoke", overrides=["data=digits", "trainer=debug"])
        done = client.wait(run["id"], timeout=900, poll=1.0, raise_on_failure=False)
        assert done["status"] == "succeeded", client.logs(run["id"])[-3000:]
        metrics = client.metrics(run["id"])
        accuracy = [m["value"] for m in metrics if (m["suite"], m["name"]) == ("clean", "accuracy")]
        assert len(accuracy) == 1 and 0.0 <= accuracy[0] <= 1.0
        report = client.report(run["id"])
        assert report["run"]["type"] == "train" and report["data"]["name"] == "digits"
        assert len(metrics) == len(report["metrics"])
        artifacts = {a["name"]: a for a in client.artifacts(run["id"])}
        assert artifacts["robustness_report.json"]["download_url"]
        assert "checkpoints/last.ckpt" in artifacts
