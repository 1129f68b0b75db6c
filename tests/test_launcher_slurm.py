"""SLURM: presets compose with train.yaml, jobs requeue-resume from last.ckpt, Lightning's auto-requeue is off."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf
from robustlit_launcher import Job, JobStatus, LauncherError, get_backend
from robustlit_launcher.slurm import slurm_status

from robustlit.cli.build import build_trainer
from robustlit.cli.train import resume_checkpoint, train
from robustlit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["trainer=debug", "evaluation=[]", "data.image_size=16", "model.width=8", "scheduler=cosine"]


def launcher_config(compose_config, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from robustlit.cli.app import config_dir

    with initialize_config_dir(str(config_dir()), version_base=None):
        return compose("train", overrides=[*overrides, "output_dir=."], return_hydra_config=True)


def test_cpu_preset_follows_the_trainer(compose_config) -> None:
    cfg = launcher_config(compose_config, ["hydra/launcher=slurm"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (1, 1, None)
    assert launcher["max_num_timeout"] > 0 and launcher["signal_delay_s"] == 120
    assert instantiate(cfg.hydra.launcher).params["tasks_per_node"] == 1


def test_gpu_preset_runs_one_task_per_gpu(compose_config) -> None:
    cfg = launcher_config(compose_config, ["hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=4",
                                           "trainer.num_nodes=2", "hydra.launcher.partition=gpu"])
    params = instantiate(cfg.hydra.launcher).params
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)
    assert params["partition"] == "gpu"


@pytest.mark.slow
def test_multirun_with_the_slurm_preset_fails_clearly_without_slurm(tmp_path: Path) -> None:
    if shutil.which("srun"):
        pytest.skip("srun is installed: this checks the message on machines without SLURM")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("robustlit-train")), "-m", "hydra/launcher=slurm", *TINY,
         f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert 'Could not detect "srun"' in result.stderr


def test_resume_choice(tmp_path: Path) -> None:
    def choose(value):
        return resume_checkpoint(OmegaConf.create({"resume": value}), tmp_path)

    assert choose("auto") is None and choose("never") is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    assert choose("auto") == str(last)
    assert choose("never") is None
    assert choose(str(last)) == str(last)
    with pytest.raises(ConfigError, match="resume=nope.ckpt is not a checkpoint file"):
        choose("nope.ckpt")


class Preempted(L.Callback):
    """Ends the fit after the first epoch, as if the allocation had been preempted right after saving last.ckpt."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_a_requeued_run_resumes_from_last_ckpt(tmp_path: Path, compose_config) -> None:
    """First allocation: epoch 1 of 2, then preempted. The requeued run, same command and dir, trains epoch 2 only."""
    output = tmp_path / "run"
    cfg = compose_config("train", [*TINY, f"output_dir={output}", "trainer.max_epochs=2"])
    train(cfg, verbose=False, callbacks=[Preempted()])
    first_state = torch.load(output / "checkpoints" / "last.ckpt", weights_only=False)
    assert first_state["global_step"] == 2
    report, _ = train(cfg, verbose=False)
    state = torch.load(output / "checkpoints" / "last.ckpt", weights_only=False)
    # 2 epochs x limit_train_batches=2 in all, not 1 + 2 epochs
    assert (state["epoch"], state["global_step"]) == (first_state["epoch"] + 1, 4)
    with open(output / "logs" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    # the requeued run logged only epoch 1's two steps (a fresh start would log epochs 0 and 1); Lightning's
    # CSVLogger starts a new metrics.csv in an existing log dir, so the first allocation's rows are not kept
    assert sorted(int(row["epoch"]) for row in rows) == [1, 1]
    assert report.run.config["resume"] == "auto"


def test_lightning_auto_requeue_is_off_under_slurm(tmp_path: Path, compose_config, monkeypatch) -> None:
    for key, value in {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "robustlit",
                       "SLURM_JOB_ID": "42", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                       "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config("train", [*TINY, f"output_dir={tmp_path}"])
    trainer = build_trainer(cfg, [], tmp_path, checkpoints=True)
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue is False
    monkeypatch.delenv("SLURM_NTASKS")
    trainer = build_trainer(cfg, [], tmp_path, checkpoints=True)
    assert not isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)


def test_state_mapping_and_missing_tools(tmp_path: Path, monkeypatch) -> None:
    assert slurm_status("PENDING") is JobStatus.QUEUED
    assert slurm_status("RUNNING") is JobStatus.RUNNING
    assert slurm_status("COMPLETED") is JobStatus.SUCCEEDED
    assert slurm_status("TIMEOUT") is JobStatus.FAILED and slurm_status("OUT_OF_MEMORY") is JobStatus.FAILED
    assert slurm_status("CANCELLED by 0") is JobStatus.CANCELED
    assert slurm_status("REQUEUED") is JobStatus.QUEUED and slurm_status("PREEMPTED") is JobStatus.QUEUED
    with pytest.raises(LauncherError, match="tasks_per_node must be a positive integer, got -1"):
        get_backend("slurm", folder=tmp_path, tasks_per_node=-1)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="sbatch and srun not found on PATH"):
        get_backend("slurm", folder=tmp_path).submit(Job(["true"], workdir=str(tmp_path)))


def test_sbatch_script_carries_the_job_shape(tmp_path: Path, monkeypatch) -> None:
    """Stand-in sbatch/srun at the process boundary: checks what we hand to SLURM, not SLURM itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncp "$1" "$(dirname "$0")/submitted.sh"\n'
                                    'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    backend = get_backend("slurm", folder=tmp_path / "jobs", partition="gpu", nodes=2, tasks_per_node=4,
                          gpus_per_node=4, mem_gb=64, timeout_min=90, setup=["source /opt/venv/bin/activate"])
    handle = backend.submit(Job(["robustlit-train", "trainer=ddp"], workdir=str(tmp_path), name="cifar"))
    assert handle == "4242"
    script = (bin_dir / "submitted.sh").read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --mem=64GB", "#SBATCH --time=90", "#SBATCH --partition=gpu", "#SBATCH --job-name=cifar",
                 "#SBATCH --signal=USR2@120", "source /opt/venv/bin/activate"):
        assert line in script
    log = tmp_path / "jobs" / "4242" / "4242_0_log.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("epoch 1\n")
    assert backend.logs(handle) == "epoch 1\n" and backend.logs(handle, offset=6) == "1\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("sbatch") is None,
                    reason="no SLURM here (sbatch not on PATH): slurm-wlm and munge are not installed")
def test_real_slurm_job_writes_its_report(tmp_path: Path) -> None:
    shared = Path(os.environ.get("ROBUSTLIT_SLURM_SHARED", tmp_path))  # must be visible from the compute node
    run_dir = shared / "run"
    backend = get_backend("slurm", folder=shared / "jobs", timeout_min=10, cpus_per_task=1)
    program = str(Path(sys.executable).with_name("robustlit-train"))
    handle = backend.submit(Job([program, *TINY, f"hydra.run.dir={run_dir}"], workdir=str(ROOT), name="ci-debug"))
    deadline = time.monotonic() + 600
    while not backend.status(handle).finished and time.monotonic() < deadline:
        time.sleep(2)
    assert backend.status(handle) is JobStatus.SUCCEEDED, backend.logs(handle)[-3000:]
    report = json.loads((run_dir / "robustness_report.json").read_text())
    assert report["metrics"][0]["suite"] == "clean"
