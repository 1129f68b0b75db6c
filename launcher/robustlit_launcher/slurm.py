"""SLURM backend: jobs go through submitit's ``sbatch`` executor and are requeued on preemption or timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from robustlit_launcher.job import Backend, Job, JobNotFoundError, JobStatus, LauncherError

# sacct states (man sacct, "JOB STATE CODES"); anything else counts as queued until SLURM settles
SLURM_STATES = {
    "PENDING": JobStatus.QUEUED, "REQUEUED": JobStatus.QUEUED, "REQUEUE_FED": JobStatus.QUEUED,
    "REQUEUE_HOLD": JobStatus.QUEUED, "RESV_DEL_HOLD": JobStatus.QUEUED, "PREEMPTED": JobStatus.QUEUED,
    "SUSPENDED": JobStatus.QUEUED, "CONFIGURING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING, "COMPLETING": JobStatus.RUNNING, "STAGE_OUT": JobStatus.RUNNING,
    "RESIZING": JobStatus.RUNNING, "SIGNALING": JobStatus.RUNNING,
    "COMPLETED": JobStatus.SUCCEEDED,
    "CANCELLED": JobStatus.CANCELED,
    "FAILED": JobStatus.FAILED, "TIMEOUT": JobStatus.FAILED, "OUT_OF_MEMORY": JobStatus.FAILED,
    "NODE_FAIL": JobStatus.FAILED, "BOOT_FAIL": JobStatus.FAILED, "DEADLINE": JobStatus.FAILED,
    "REVOKED": JobStatus.FAILED,
}


def slurm_status(state: str) -> JobStatus:
    """Map a SLURM job state (``sacct``'s ``State`` column, e.g. ``CANCELLED by 123``) to a :class:`JobStatus`.

    Example:
        >>> slurm_status("CANCELLED by 1000"), slurm_status("PREEMPTED"), slurm_status("COMPLETED")
        (<JobStatus.CANCELED: 'canceled'>, <JobStatus.QUEUED: 'queued'>, <JobStatus.SUCCEEDED: 'succeeded'>)
    """
    word = state.strip().split(" ", 1)[0].rstrip("+").upper()
    return SLURM_STATES.get(word, JobStatus.QUEUED)


class RequeueableCommand:
    """A command that submitit runs in each SLURM task and requeues, unchanged, on preemption or timeout.

    The command inherits the task's stdout and stderr, so its output streams to the SLURM log files. Requeueing
    only pays off when the command resumes by itself: ``robustlit-train`` continues from ``last.ckpt`` in its
    output directory, so pin ``output_dir=…`` (or ``hydra.run.dir=…``) in the command.

    Args:
        command: Program and arguments.
        workdir: Directory the command runs in.
        env: Variables added to the task's environment.

    Example:
        >>> RequeueableCommand(["true"], workdir=".")()
        0
    """

    def __init__(self, command: list[str], workdir: str, env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.workdir = workdir
        self.env = dict(env or {})

    def __call__(self) -> int:
        """Run the command to completion; raise if it fails, so SLURM and submitit record a failure."""
        code = subprocess.call(self.command, cwd=self.workdir, env={**os.environ, **self.env})
        if code != 0:
            raise RuntimeError(f"{self.command[0]} exited with status {code}")
        return code

    def checkpoint(self) -> Any:
        """Called by submitit when the job is preempted or about to time out: resubmit the same command."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class SlurmBackend(Backend):
    """Submit jobs with ``sbatch`` through submitit; one SLURM task per device, so Lightning runs SLURM-managed DDP.

    Args:
        folder: Shared folder (visible from the compute nodes) for submitit's pickles and the logs.
        partition: SLURM partition; the cluster's default when ``None``.
        timeout_min: Wall-clock limit of each allocation, in minutes.
        nodes: Nodes per job (Lightning's ``trainer.num_nodes``).
        tasks_per_node: Tasks per node (Lightning's ``trainer.devices``: one process per device).
        gpus_per_node: GPUs per node; ``None`` for CPU jobs.
        cpus_per_task: CPU cores per task.
        mem_gb: Memory per node in GB.
        max_num_timeout: How often a job that hits its time limit is requeued; preemptions requeue regardless.
        signal_delay_s: Seconds before the time limit at which SLURM signals the job to requeue.
        setup: Shell lines run before the tasks start (``module load …``, ``source venv/bin/activate``).
        additional_parameters: Other ``#SBATCH`` options, e.g. ``{"qos": "high", "constraint": "a100"}``.

    Example:
        >>> backend = SlurmBackend("/shared/jobs", partition="gpu", gpus_per_node=8, tasks_per_node=8)
        >>> handle = backend.submit(Job(["robustlit-train", "trainer=ddp", "trainer.devices=8"], workdir="."))
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        folder: Path | str,
        partition: str | None = None,
        timeout_min: int = 60,
        nodes: int = 1,
        tasks_per_node: int = 1,
        gpus_per_node: int | None = None,
        cpus_per_task: int | None = None,
        mem_gb: int | None = None,
        max_num_timeout: int = 3,
        signal_delay_s: int = 120,
        setup: list[str] | None = None,
        additional_parameters: dict[str, Any] | None = None,
    ) -> None:
        for option, value in (("timeout_min", timeout_min), ("nodes", nodes), ("tasks_per_node", tasks_per_node)):
            if not isinstance(value, int) or value < 1:
                raise LauncherError(f"slurm {option} must be a positive integer, got {value!r}")
        if gpus_per_node is not None and (not isinstance(gpus_per_node, int) or gpus_per_node < 0):
            raise LauncherError(f"slurm gpus_per_node must be a non-negative integer or None, got {gpus_per_node!r}")
        self.folder = Path(folder)
        self.max_num_timeout = max_num_timeout
        parameters: dict[str, Any] = {
            "time": timeout_min, "nodes": nodes, "ntasks_per_node": tasks_per_node, "signal_delay_s": signal_delay_s,
            "stderr_to_stdout": True, "setup": list(setup or []),
            "additional_parameters": dict(additional_parameters or {}),
        }
        optional = {"partition": partition, "gpus_per_node": gpus_per_node, "cpus_per_task": cpus_per_task,
                    "mem": None if mem_gb is None else f"{mem_gb}GB"}
        self.parameters = {**parameters, **{k: v for k, v in optional.items() if v is not None}}

    def submit(self, job: Job) -> str:
        """``sbatch`` the job and return its SLURM job id."""
        import submitit

        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise LauncherError(f"cannot submit to SLURM: {' and '.join(missing)} not found on PATH; run on a "
                                "SLURM login node, or use backend=local")
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=self.max_num_timeout)
        executor.update_parameters(job_name=job.name or "robustlit", **self.parameters)
        submitted = executor.submit(RequeueableCommand(job.command, job.workdir, job.env))
        return str(submitted.job_id)

    def status(self, handle: str) -> JobStatus:
        """The job's state as ``sacct`` reports it."""
        return slurm_status(self._job(handle).state)

    def cancel(self, handle: str) -> None:
        """``scancel`` the job (SLURM stops every task on every node)."""
        if not self.status(handle).finished:
            self._job(handle).cancel(check=True)

    def logs(self, handle: str, offset: int = 0) -> str:
        """Output of the job's first task (stdout and stderr merged) from character ``offset`` on."""
        if offset < 0:
            raise LauncherError(f"offset must be >= 0, got {offset}")
        path = self._job(handle).paths.stdout
        if not path.exists():
            return ""
        return path.read_bytes().decode("utf-8", errors="replace")[offset:]

    def _job(self, handle: str) -> Any:
        import submitit

        if not isinstance(handle, str) or not handle.replace("_", "").isdigit():
            raise JobNotFoundError(f"{handle!r} is not a SLURM job id")
        return submitit.SlurmJob(folder=self.folder / "%j", job_id=handle)
