"""Local launcher backend: real subprocesses, real process groups, state that survives its submitter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from robustlit_launcher import Job, JobNotFoundError, JobStatus, LauncherError, get_backend
from robustlit_launcher._supervisor import start_token

PY = sys.executable


def python_job(code: str, workdir: Path, **kwargs) -> Job:
    return Job([PY, "-c", textwrap.dedent(code)], workdir=str(workdir), **kwargs)


def wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    return start_token(pid) is None


# a job that starts two grandchildren (one ignores SIGTERM), writes all pids, then waits
TREE = """
    import json, os, subprocess, sys, time
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]),
            subprocess.Popen([sys.executable, "-c",
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])]
    open("pids.json.part", "w").write(json.dumps([os.getpid()] + [k.pid for k in kids]))
    os.replace("pids.json.part", "pids.json")
    print("tree up", flush=True)
    time.sleep(300)
"""


def test_submit_status_logs_and_exit_code(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path / "jobs")
    ok = backend.submit(python_job("import os; print('hi', os.environ['ROBUSTLIT_X'])", tmp_path,
                                   env={"ROBUSTLIT_X": "42"}, name="ok"))
    bad = backend.submit(python_job("import sys; print('oops', file=sys.stderr); sys.exit(3)", tmp_path))
    assert backend.wait(ok, timeout_s=60) is JobStatus.SUCCEEDED
    assert backend.wait(bad, timeout_s=60) is JobStatus.FAILED
    assert backend.logs(ok) == "hi 42\n"
    assert backend.logs(ok, offset=3) == "42\n"
    assert backend.logs(ok, offset=100) == ""
    assert backend.logs(bad) == "oops\n"  # stderr goes to the same log
    assert backend.exit_code(ok) == 0 and backend.exit_code(bad) == 3
    assert (tmp_path / "jobs" / ok / "log.txt").read_text() == "hi 42\n"
    assert json.loads((tmp_path / "jobs" / ok / "job.json").read_text())["name"] == "ok"


def test_logs_follow_a_running_job(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path)
    handle = backend.submit(python_job("""
        import os, time
        print("first", flush=True)
        while not os.path.exists("go"):
            time.sleep(0.02)
        print("second")
    """, tmp_path))
    wait_for(lambda: backend.logs(handle) == "first\n")
    assert backend.status(handle) is JobStatus.RUNNING
    seen = len(backend.logs(handle))
    (tmp_path / "go").touch()
    assert backend.wait(handle, timeout_s=60) is JobStatus.SUCCEEDED
    assert backend.logs(handle, offset=seen) == "second\n"


def test_cancel_kills_the_whole_process_tree(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path / "jobs", grace_s=1.0)
    handle = backend.submit(python_job(TREE, tmp_path))
    wait_for(lambda: (tmp_path / "pids.json").exists())
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert len(pids) == 3 and not any(gone(pid) for pid in pids)
    assert backend.status(handle) is JobStatus.RUNNING
    backend.cancel(handle)
    assert backend.status(handle) is JobStatus.CANCELED
    # the SIGTERM-ignoring grandchild needed the SIGKILL after grace_s
    assert [pid for pid in pids if not gone(pid)] == []
    assert backend.exit_code(handle) < 0
    backend.cancel(handle)  # canceling a finished job changes nothing
    assert backend.status(handle) is JobStatus.CANCELED


def test_stragglers_are_stopped_when_the_main_process_ends(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path / "jobs", grace_s=1.0)
    handle = backend.submit(Job(["sh", "-c", "sleep 300 & echo $! > straggler.pid; exit 0"], workdir=str(tmp_path)))
    assert backend.wait(handle, timeout_s=60) is JobStatus.SUCCEEDED
    assert gone(int((tmp_path / "straggler.pid").read_text()))


def test_cancel_finished_job_is_a_noop_and_success_stays(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path)
    handle = backend.submit(Job(["true"], workdir=str(tmp_path)))
    assert backend.wait(handle, timeout_s=60) is JobStatus.SUCCEEDED
    backend.cancel(handle)
    assert backend.status(handle) is JobStatus.SUCCEEDED


def test_status_survives_the_submitter_dying(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    submitter = textwrap.dedent(f"""
        import os, sys
        from robustlit_launcher import Job, get_backend
        backend = get_backend("local", root={str(root)!r})
        handle = backend.submit(Job([sys.executable, "-c",
            "import os, time\\nwhile not os.path.exists('release'): time.sleep(0.02)\\nraise SystemExit(7)"],
            workdir={str(tmp_path)!r}))
        print(handle, flush=True)
        os._exit(0)  # die abruptly, without any cleanup
    """)
    launcher_dir = Path(__file__).resolve().parents[1] / "launcher"
    result = subprocess.run([PY, "-c", submitter], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": f"{launcher_dir}:{launcher_dir.parent}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    handle = result.stdout.strip()
    fresh = get_backend("local", root=root)
    wait_for(lambda: fresh.status(handle) is JobStatus.RUNNING)
    (tmp_path / "release").touch()
    assert fresh.wait(handle, timeout_s=60) is JobStatus.FAILED
    assert fresh.exit_code(handle) == 7


def test_lost_supervisor_is_reported_failed(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path)
    handle = backend.submit(Job(["true"], workdir=str(tmp_path)))
    backend.wait(handle, timeout_s=60)
    supervisor = json.loads((tmp_path / handle / "supervisor.json").read_text())["pid"]
    wait_for(lambda: gone(supervisor))
    (tmp_path / handle / "exit.json").unlink()  # as if the supervisor had been killed before recording it
    assert backend.status(handle) is JobStatus.FAILED
    assert backend.exit_code(handle) is None


def test_missing_program_fails_with_a_logged_reason(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path)
    handle = backend.submit(Job(["robustlit-no-such-program"], workdir=str(tmp_path)))
    assert backend.wait(handle, timeout_s=60) is JobStatus.FAILED
    assert "cannot start 'robustlit-no-such-program'" in backend.logs(handle)
    assert backend.exit_code(handle) == 127


def test_bad_input_gives_clear_errors(tmp_path: Path) -> None:
    backend = get_backend("local", root=tmp_path)
    with pytest.raises(JobNotFoundError, match="no local job 'nope'"):
        backend.status("nope")
    with pytest.raises(JobNotFoundError):
        backend.logs("../../etc")
    with pytest.raises(LauncherError, match="not a directory"):
        backend.submit(Job(["true"], workdir=str(tmp_path / "missing")))
    with pytest.raises(LauncherError, match="non-empty list of strings"):
        Job("robustlit-train trainer=debug", workdir=".")  # type: ignore[arg-type]
    with pytest.raises(LauncherError, match="unknown launcher backend 'lsf'; choose one of: local, slurm, kubernetes"):
        get_backend("lsf")
    assert JobStatus("canceled") is JobStatus.CANCELED and JobStatus.QUEUED == "queued"


def test_the_launcher_never_imports_torch() -> None:
    launcher_dir = Path(__file__).resolve().parents[1] / "launcher"
    code = ("import sys; import robustlit_launcher, robustlit_launcher.local, robustlit_launcher.slurm, "
            "robustlit_launcher.k8s, robustlit_launcher.s3sync, robustlit.cli.launch; "
            "robustlit_launcher.get_backend('kubernetes'); print(sorted(m for m in sys.modules if m == 'torch'))")
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": f"{launcher_dir}:{launcher_dir.parent}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
