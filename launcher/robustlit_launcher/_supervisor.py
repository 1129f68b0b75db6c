"""Detached supervisor of one local job: starts it in its own process group and records its pid and exit code.

It runs as ``python _supervisor.py JOB_DIR`` in a session of its own, so it outlives the process that
submitted the job; any later backend object reads the files it leaves in ``JOB_DIR``. Standard library only,
because it is started by path (``robustlit_launcher`` need not be importable in the job's environment).

Files in ``JOB_DIR``: ``job.json`` (input), ``log.txt`` (stdout + stderr), ``process.json`` (the job's pid,
which is also its process-group id), ``cancel`` (a request to stop), ``exit.json`` (the exit code, last).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
REAP_POLL_S = 0.05


def utc_now() -> str:
    """Current UTC time in ISO 8601 with a ``Z`` suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically, so readers never see half a file."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def start_token(pid: int) -> str | None:
    """The process's start time in clock ticks (guards against pid reuse), ``""`` without /proc, ``None`` if gone.

    A zombie counts as gone: it has exited and only waits to be reaped.
    """
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    # fields[0] is the state (field 3 of proc(5)); the start time is field 22
    return None if fields[0] in ("Z", "X") else fields[19]


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``, ignoring a group that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def reap_children() -> None:
    """Collect every exited child (including adopted orphans) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the group, wait up to ``grace_s`` while reaping, then SIGKILL whatever is left."""
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        reap_children()
        time.sleep(REAP_POLL_S)
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while group_alive(pgid) and time.monotonic() < deadline:
        reap_children()
        time.sleep(REAP_POLL_S)


def become_subreaper() -> None:
    """On Linux, adopt orphaned descendants, so their exit can be reaped here instead of by (a possibly lax) pid 1."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def supervise(job_dir: Path) -> int:
    """Run the job described by ``job_dir/job.json`` to completion; returns its exit code."""
    spec = json.loads((job_dir / "job.json").read_text())
    grace_s = float(spec.get("grace_s", 10.0))
    if (job_dir / "cancel").exists():
        write_json(job_dir / "exit.json", {"exit_code": -signal.SIGTERM, "finished_at": utc_now()})
        return -signal.SIGTERM
    become_subreaper()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec["env"]}
    with open(job_dir / "log.txt", "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                spec["command"], cwd=spec["workdir"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as error:
            log.write(f"robustlit-launcher: cannot start {spec['command'][0]!r}: {error}\n".encode())
            write_json(job_dir / "exit.json", {"exit_code": 127, "finished_at": utc_now()})
            return 127
    pgid = child.pid
    write_json(job_dir / "process.json", {"pid": child.pid, "pgid": pgid, "token": start_token(child.pid),
                                          "started_at": utc_now()})

    def forward(signum: int, _frame: object) -> None:
        signal_group(pgid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if (job_dir / "cancel").exists():  # a cancel that arrived before process.json existed
        signal_group(pgid, signal.SIGTERM)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        if pid == child.pid:
            code = os.waitstatus_to_exitcode(status)
            break
    child.returncode = code  # already reaped above; keeps Popen from waiting for it again
    # like a cluster scheduler, the job ends with its main process: stragglers in its group are stopped
    stop_group(pgid, grace_s)
    reap_children()
    write_json(job_dir / "exit.json", {"exit_code": code, "finished_at": utc_now()})
    return code


if __name__ == "__main__":
    supervise(Path(sys.argv[1]))
