"""Local backend: each job is a subprocess in its own process group, watched by a detached supervisor."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from robustlit_launcher import _supervisor
from robustlit_launcher.job import Backend, Job, JobNotFoundError, JobStatus, LauncherError

POLL_S = 0.05
HANDLE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$")


class LocalBackend(Backend):
    """Run jobs on this machine; state lives in files under ``root``, so any process can query or cancel them.

    ``submit`` starts a small supervisor in a session of its own; it starts the command in a new process group,
    appends its stdout and stderr to ``root/<handle>/log.txt``, and writes the job's pid and, at the end, its exit
    code next to it. The submitting process may exit or crash: a new backend on the same ``root`` still reports
    the job's status, and ``cancel`` stops the job's whole process tree (SIGTERM, then SIGKILL after ``grace_s``).

    Args:
        root: Folder of the job directories; created if missing.
        grace_s: Seconds between SIGTERM and SIGKILL when a job is canceled or leaves stragglers behind.

    Example:
        >>> backend = LocalBackend(root=Path(getfixture("tmp_path")))
        >>> handle = backend.submit(Job([sys.executable, "-c", "print('hello')"], workdir="."))
        >>> backend.wait(handle, timeout_s=60), backend.logs(handle).strip()
        (<JobStatus.SUCCEEDED: 'succeeded'>, 'hello')
    """

    def __init__(self, root: Path | str, grace_s: float = 10.0) -> None:
        if grace_s < 0:
            raise LauncherError(f"grace_s must be >= 0, got {grace_s}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.grace_s = float(grace_s)
        self._supervisors: dict[str, subprocess.Popen] = {}

    def submit(self, job: Job) -> str:
        """Start ``job`` in the background and return its handle (``YYYYmmdd-HHMMSS-<8 hex>``)."""
        workdir = Path(job.workdir)
        if not workdir.is_dir():
            raise LauncherError(f"Job.workdir={job.workdir!r} is not a directory")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        handle = f"{stamp}-{uuid.uuid4().hex[:8]}"
        job_dir = self.root / handle
        job_dir.mkdir()
        spec = {**asdict(job), "workdir": str(workdir.resolve()), "grace_s": self.grace_s}
        _supervisor.write_json(job_dir / "job.json", spec)
        (job_dir / "log.txt").touch()
        supervisor = subprocess.Popen(
            [sys.executable, _supervisor.__file__, str(job_dir)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
        )
        _supervisor.write_json(job_dir / "supervisor.json",
                               {"pid": supervisor.pid, "token": _supervisor.start_token(supervisor.pid)})
        self._supervisors[handle] = supervisor
        return handle

    def status(self, handle: str) -> JobStatus:
        """``queued`` until the command has started, then ``running``, then how it ended.

        A job whose supervisor vanished without recording an exit code (killed, or the machine rebooted)
        is reported as ``failed`` once its process is gone too.
        """
        job_dir = self._job_dir(handle)
        self._reap(handle)
        exit_record = _read_json(job_dir / "exit.json")
        if exit_record is not None:
            if (job_dir / "cancel").exists():
                return JobStatus.CANCELED
            return JobStatus.SUCCEEDED if exit_record["exit_code"] == 0 else JobStatus.FAILED
        process = _read_json(job_dir / "process.json")
        if process is not None and _alive(process):
            return JobStatus.RUNNING
        supervisor = _read_json(job_dir / "supervisor.json")
        if supervisor is not None and _alive(supervisor):
            # the supervisor may have written exit.json between our two reads
            if (job_dir / "exit.json").exists():
                return self.status(handle)
            return JobStatus.RUNNING if process is not None else JobStatus.QUEUED
        if (job_dir / "exit.json").exists():
            return self.status(handle)
        return JobStatus.FAILED

    def exit_code(self, handle: str) -> int | None:
        """The command's exit code (negative: killed by that signal), or ``None`` while it has not ended."""
        record = _read_json(self._job_dir(handle) / "exit.json")
        return None if record is None else int(record["exit_code"])

    def cancel(self, handle: str) -> None:
        """Stop the job's whole process group and return once it is gone; a no-op for a finished job."""
        job_dir = self._job_dir(handle)
        if self.status(handle).finished:
            return
        (job_dir / "cancel").touch()
        deadline = time.monotonic() + self.grace_s
        process = _read_json(job_dir / "process.json")
        if process is not None:
            _supervisor.signal_group(process["pgid"], signal.SIGTERM)
        while not self.status(handle).finished and time.monotonic() < deadline:
            process = process or _read_json(job_dir / "process.json")
            time.sleep(POLL_S)
        if process is not None and _supervisor.group_alive(process["pgid"]):
            _supervisor.signal_group(process["pgid"], signal.SIGKILL)
        # the supervisor reaps the group and records the exit; give it a moment, then stop waiting on it
        deadline = time.monotonic() + 5.0
        while not self.status(handle).finished and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def logs(self, handle: str, offset: int = 0) -> str:
        """The job's output from character ``offset`` on; pass the total length read so far to follow it."""
        if offset < 0:
            raise LauncherError(f"offset must be >= 0, got {offset}")
        text = (self._job_dir(handle) / "log.txt").read_bytes().decode("utf-8", errors="replace")
        return text[offset:]

    def wait(self, handle: str, timeout_s: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout_s`` passed) and return its status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (status := self.status(handle)).finished:
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(POLL_S)
        return status

    def _job_dir(self, handle: str) -> Path:
        if not isinstance(handle, str) or not HANDLE.match(handle) or not (self.root / handle / "job.json").is_file():
            raise JobNotFoundError(f"no local job {handle!r} under {self.root}")
        return self.root / handle

    def _reap(self, handle: str) -> None:
        """Collect our own supervisor's exit status, so it does not linger as a zombie of this process."""
        supervisor = self._supervisors.get(handle)
        if supervisor is not None and supervisor.poll() is not None:
            del self._supervisors[handle]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _alive(record: dict) -> bool:
    """Whether the process of a ``{"pid", "token"}`` record is still the one that was started."""
    token = _supervisor.start_token(int(record["pid"]))
    return token is not None and (token == record.get("token") or record.get("token") in (None, ""))
