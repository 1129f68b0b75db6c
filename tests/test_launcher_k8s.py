"""Kubernetes backend: manifests validate against the API models, dry runs are stable, the pod command works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from robustlit_launcher import Job, JobStatus, LauncherError, get_backend
from robustlit_launcher.k8s import KubernetesOptions, job_status, manifests, to_yaml
from robustlit_launcher.s3sync import upload_folder

from robustlit.cli.launch import resolved_config
from robustlit.cli.main import main

GOLDEN = Path(__file__).parent / "fixtures" / "launcher" / "k8s_8gpu.yaml"
KINDS = {"Job": "V1Job", "ConfigMap": "V1ConfigMap", "Service": "V1Service"}


def validate(manifest: dict) -> None:
    """Deserialize into the official models (required fields checked) and serialize back unchanged.

    Deserialization drops keys the API does not know, so equality also catches misspelled or misplaced fields.
    """
    api = client.ApiClient()
    api.configuration.client_side_validation = True
    model = api.deserialize(json.dumps(manifest), KINDS[manifest["kind"]], "application/json")
    assert api.sanitize_for_serialization(model) == manifest


def job_of(objects: list[dict]) -> dict:
    assert objects[-1]["kind"] == "Job"
    return objects[-1]


def container_of(objects: list[dict]) -> dict:
    (container,) = job_of(objects)["spec"]["template"]["spec"]["containers"]
    return container


TRAIN = Job(["robustlit-train", "--config-dir", "/etc/robustlit", "--config-name", "config"], "/workspace",
            env={"HF_HUB_OFFLINE": "1"}, name="cifar pgd")
CONFIG = {"seed": 0, "trainer": {"accelerator": "gpu", "devices": 8, "strategy": "ddp"}, "output_dir": "/artifacts/x"}


@pytest.mark.parametrize("gpus", [1, 8])
def test_gpu_manifests_validate(gpus: int) -> None:
    options = KubernetesOptions(
        namespace="ml", image="registry.example/robustlit:0.1", gpus=gpus, cpu="8", memory="32Gi",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, tolerations=["nvidia.com/gpu:NoSchedule",
                                                                                         "dedicated=ml:NoExecute"],
        data_pvc="datasets", artifacts_pvc="runs", secret_env={"MLFLOW_TRACKING_TOKEN": "mlflow:token"},
        env_from_secrets=["s3-credentials"], image_pull_secrets=["registry"], service_account="trainer",
        active_deadline_s=86400,
    )
    objects = manifests(TRAIN, options, CONFIG)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]
    for manifest in objects:
        validate(manifest)
    container = container_of(objects)
    assert container["resources"] == {"requests": {"cpu": "8", "memory": "32Gi"},
                                      "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(gpus)}}
    pod = job_of(objects)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"}]
    # secrets are referenced by name, never inlined
    assert {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mlflow", "key": "token"}}} in \
        container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert yaml.safe_load(objects[0]["data"]["config.yaml"]) == CONFIG
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"data": {"claimName": "datasets", "readOnly": True}, "artifacts": {"claimName": "runs"}}


def test_multi_node_is_an_indexed_job_with_rendezvous() -> None:
    objects = manifests(TRAIN, KubernetesOptions(namespace="ml", gpus=4, nodes=2), CONFIG)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "Job"]
    for manifest in objects:
        validate(manifest)
    name = job_of(objects)["metadata"]["name"]
    spec = job_of(objects)["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["template"]["spec"]["subdomain"] == objects[1]["metadata"]["name"] == name
    env = {e["name"]: e for e in container_of(objects)["env"]}
    assert env["MASTER_ADDR"]["value"] == f"{name}-0.{name}.ml.svc"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]


def test_golden_manifest() -> None:
    options = KubernetesOptions(namespace="ml", image="registry.example/robustlit:0.1", gpus=8,
                                tolerations=["nvidia.com/gpu:NoSchedule"], data_pvc="datasets", s3_uri="s3://runs/cifar",
                                secret_env={"AWS_SECRET_ACCESS_KEY": "s3:secret_key"})
    text = to_yaml(manifests(TRAIN, options, CONFIG))
    if os.environ.get("ROBUSTLIT_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "k8s manifests changed; if intended, rerun with ROBUSTLIT_UPDATE_GOLDEN=1"
    for manifest in yaml.safe_load_all(text):
        validate(manifest)


def test_dry_run_is_stable_and_valid(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["launch", "--backend", "kubernetes", "--dry-run", "--gpus", "8", "--namespace", "ml",
            "--artifacts-pvc", "runs", "--toleration", "nvidia.com/gpu:NoSchedule", "recipe=mixup", "seed=4"]
    main(argv)
    first = capsys.readouterr().out
    main(argv)
    assert capsys.readouterr().out == first
    objects = list(yaml.safe_load_all(first))
    for manifest in objects:
        validate(manifest)
    name = job_of(objects)["metadata"]["name"]
    assert name.startswith("robustlit-train-")
    config = yaml.safe_load(objects[0]["data"]["config.yaml"])
    expected = resolved_config("train", ["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=1", "recipe=mixup",
                                         "seed=4", f"output_dir=/artifacts/{name}"])
    assert config == expected
    assert (config["trainer"]["devices"], config["trainer"]["strategy"], config["seed"]) == (8, "ddp", 4)
    assert container_of(objects)["command"][-1] == f"hydra.run.dir=/artifacts/{name}"
    main([*argv[:-1], "seed=5"])  # another config is another job
    assert job_of(list(yaml.safe_load_all(capsys.readouterr().out)))["metadata"]["name"] != name


def test_bad_launch_options_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["launch", "--backend", "kubernetes", "--dry-run", "--toleration", "gpu:Sometimes"])
    assert exit_info.value.code == 2
    assert "toleration 'gpu:Sometimes' must be KEY[=VALUE]:EFFECT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["launch", "--backend", "kubernetes", "--dry-run", "data=nope"])
    assert "unknown data option 'nope'" in capsys.readouterr().err
    with pytest.raises(LauncherError, match="secret_env\\[TOKEN\\]='token' must be SECRET:KEY"):
        KubernetesOptions(secret_env={"TOKEN": "token"})
    with pytest.raises(LauncherError, match="s3_uri must look like s3://bucket/prefix"):
        KubernetesOptions(s3_uri="bucket/prefix")
    with pytest.raises(LauncherError, match="unknown kubernetes option"):
        get_backend("kubernetes", gpu=1)


def test_status_mapping_from_job_objects() -> None:
    def job(annotations=None, **status):
        conditions = [client.V1JobCondition(type=t, status="True") for t in status.pop("conditions", [])]
        return client.V1Job(metadata=client.V1ObjectMeta(annotations=annotations),
                            status=client.V1JobStatus(conditions=conditions or None, **status))

    assert job_status(job()) is JobStatus.QUEUED
    assert job_status(job(active=1, ready=0)) is JobStatus.QUEUED
    assert job_status(job(active=1, ready=1)) is JobStatus.RUNNING
    assert job_status(job(succeeded=1, conditions=["SuccessCriteriaMet", "Complete"])) is JobStatus.SUCCEEDED
    assert job_status(job(failed=1, conditions=["FailureTarget", "Failed"])) is JobStatus.FAILED
    assert job_status(job({"robustlit.io/canceled": "true"}, conditions=["Suspended"])) is JobStatus.CANCELED


def test_no_cluster_gives_a_clear_error(tmp_path: Path) -> None:
    backend = get_backend("kubernetes", kubeconfig=str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(LauncherError, match="cannot reach a Kubernetes cluster"):
        backend.submit(TRAIN)


def test_s3_upload_of_the_outputs(tmp_path: Path) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "robustness_report.json").write_text('{"schema_version": 1}')
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"\x00weights")
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="runs")
        keys = upload_folder(tmp_path / "run", "s3://runs/cifar/job-1", client=s3)
        assert keys == ["cifar/job-1/checkpoints/last.ckpt", "cifar/job-1/robustness_report.json"]
        body = s3.get_object(Bucket="runs", Key="cifar/job-1/checkpoints/last.ckpt")["Body"].read()
        assert body == b"\x00weights"
    with pytest.raises(LauncherError, match="must look like s3://bucket/prefix"):
        upload_folder(tmp_path / "run", "runs/cifar")


@pytest.mark.slow
def test_the_pod_command_runs_the_configmap_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run the container's command here, with the ConfigMap and the artifacts volume mapped to folders."""
    main(["launch", "--backend", "kubernetes", "--dry-run", "trainer=debug", "evaluation=[]"])
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    container = container_of(objects)
    config_dir, artifacts = tmp_path / "etc", tmp_path / "artifacts"
    config_dir.mkdir()
    remap = {"/etc/robustlit": str(config_dir), "/artifacts": str(artifacts)}

    def local(text: str) -> str:
        for mount, folder in remap.items():
            text = text.replace(mount, folder)
        return text

    (config_dir / "config.yaml").write_text(local(objects[0]["data"]["config.yaml"]))
    command = [local(part) for part in container["command"]]
    assert command[0] == "robustlit-train"
    program = Path(sys.executable).with_name("robustlit-train")
    result = subprocess.run([str(program), *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    name = job_of(objects)["metadata"]["name"]
    report = json.loads((artifacts / name / "robustness_report.json").read_text())
    assert report["run"]["config"]["output_dir"] == str(artifacts / name)
    assert report["metrics"][0]["suite"] == "clean"
