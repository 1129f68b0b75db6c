"""MLflow tracking: a real tiny training run lands in a local SQLite store, with its report and artifacts."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch

from robustlit.cli.tracking import ReportMLFlowLogger, metric_key
from robustlit.cli.train import train

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory):
    from hydra import compose, initialize_config_dir

    from robustlit.cli.app import config_dir

    root = tmp_path_factory.mktemp("mlflow")
    with initialize_config_dir(str(config_dir()), version_base=None):
        cfg = compose("train", overrides=[
            "trainer=debug", "logger=mlflow", f"output_dir={root / 'run'}", f"logger.mlflow.store_dir={root / 'store'}",
            "evaluation=[adversarial]", "evaluation.adversarial.steps=2",
            "evaluation.adversarial.eps.Linf=[4/255,8/255]", "seed=3",
        ])
    report, path = train(cfg, verbose=False)
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    return report, path, uri, mlflow.MlflowClient(uri)


def test_metrics_params_and_provenance_are_in_the_store(tracked_run) -> None:
    report, _, _, client = tracked_run
    assert report.run.mlflow_run_id is not None
    run = client.get_run(report.run.mlflow_run_id)
    assert run.info.experiment_id == client.get_experiment_by_name("robustlit").experiment_id
    assert run.data.tags["mlflow.runName"] == "baseline"
    for metric in report.metrics:
        assert run.data.metrics[metric_key(metric.suite, metric.name, metric.context)] == pytest.approx(metric.value)
    pgd = report.find("adversarial", "robust_accuracy", attack="pgd")[0]
    assert metric_key(pgd.suite, pgd.name, pgd.context).startswith("adversarial/robust_accuracy/attack:pgd/norm:Linf/")
    # Lightning's own training metrics, one point per logged step of the 2-batch debug epoch
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
    assert run.data.params["config/seed"] == "3"
    assert run.data.params["config/trainer/max_epochs"] == "1"
    tags = run.data.tags
    assert tags["robustlit.seed"] == "3"
    assert tags["robustlit.data_fingerprint"] == report.data.fingerprint
    assert tags["package.torch"] == metadata.version("torch") == report.run.packages["torch"]
    if report.run.git_sha:
        assert tags["mlflow.source.git.commit"] == report.run.git_sha


def test_report_config_plots_and_checkpoint_are_downloadable(tracked_run, tmp_path: Path) -> None:
    report, path, uri, client = tracked_run
    run_id = report.run.mlflow_run_id
    listed = {item.path for item in client.list_artifacts(run_id)}
    assert {"robustness_report.json", "config.yaml", "plots", "checkpoints", "tables"} <= listed
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="robustness_report.json",
                                                dst_path=str(tmp_path), tracking_uri=uri)
    downloaded = json.loads(Path(local).read_text())
    assert downloaded == json.loads(path.read_text())
    assert downloaded["run"]["mlflow_run_id"] == run_id
    checkpoint = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoints/last.ckpt",
                                                     dst_path=str(tmp_path), tracking_uri=uri)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    original = torch.load(report.model.checkpoint, map_location="cpu", weights_only=False)
    assert state["state_dict"].keys() == original["state_dict"].keys()
    assert all(torch.equal(state["state_dict"][k], original["state_dict"][k]) for k in state["state_dict"])
    plots = {Path(item.path).name for item in client.list_artifacts(run_id, "plots")}
    assert plots == {Path(a.uri).name for a in report.artifacts if a.type == "plot"} and plots
    config_file = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml",
                                                      dst_path=str(tmp_path), tracking_uri=uri)
    assert "seed: 3" in Path(config_file).read_text()


def test_tracking_uri_option_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = f"sqlite:///{tmp_path / 'given.db'}"
    assert ReportMLFlowLogger(tracking_uri=given)._tracking_uri == given
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    logger = ReportMLFlowLogger(store_dir=str(tmp_path / "unused"))
    assert logger._tracking_uri == "http://127.0.0.1:5000" and not (tmp_path / "unused").exists()


def test_metric_key_keeps_mlflow_safe_characters() -> None:
    assert metric_key("corruption", "error", {"corruption": "gaussian_noise", "severity": 3}) == \
        "corruption/error/corruption:gaussian_noise/severity:3"
    assert metric_key("ood", "auroc", {"detector": "energy", "ood_set": "svhn[test]"}) == \
        "ood/auroc/detector:energy/ood_set:svhn_test_"
