"""Service test helpers: real servers (``robustlit serve``) on free loopback ports, and API shortcuts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FAKE_JOB = Path(__file__).with_name("fake_job.py")
ROBUSTLIT = Path(sys.executable).with_name("robustlit")
PG_ADMIN = os.environ.get("ROBUSTLIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("ROBUSTLIT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``robustlit serve`` in a subprocess with its own data folder; fake jobs unless told otherwise."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.env = {**os.environ, "ROBUSTLIT_TRAIN_COMMAND": f"{sys.executable} {FAKE_JOB}",
                    "ROBUSTLIT_EVAL_COMMAND": f"{sys.executable} {FAKE_JOB}", "ROBUSTLIT_POLL_INTERVAL": "0.1",
                    "ROBUSTLIT_WEBHOOK_BACKOFF": "0.05", **(env or {})}
        self.process: subprocess.Popen | None = None
        self.log = home / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(ROBUSTLIT), "serve", "--port", str(self.port), "--home", str(self.home)], cwd=self.home,
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.cancel_jobs()

    def cancel_jobs(self) -> None:
        """Stop jobs this server's launcher started that are still running."""
        from robustlit_launcher import get_backend

        jobs = self.home / "jobs"
        if not jobs.is_dir():
            return
        backend = get_backend("local", root=jobs, grace_s=2.0)
        for job in jobs.iterdir():
            try:
                if not backend.status(job.name).finished:
                    backend.cancel(job.name)
            except Exception:  # noqa: BLE001 - a half-written job folder is nothing to stop
                pass


class Api:
    """An httpx client of one server, signed in with a bearer token."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30)

    def __getattr__(self, name: str):
        return getattr(self.http, name)


def bootstrap(url: str, email: str = "admin@example.com", password: str = "correct-horse") -> dict:
    """Create the first (admin) user, sign in, create an API key; returns token, key and an Api."""
    created = httpx.post(f"{url}/api/v1/users", json={"email": email, "password": password}, timeout=30)
    assert created.status_code == 201, created.text
    token = password_token(url, email, password)["access_token"]
    key = httpx.post(f"{url}/api/v1/api-keys", json={"name": "tests"}, timeout=30,
                     headers={"Authorization": f"Bearer {token}"})
    assert key.status_code == 201, key.text
    return {"token": token, "key": key.json()["key"], "api": Api(url, token), "user": created.json()}


def password_token(url: str, email: str, password: str, scope: str | None = None) -> dict:
    data = {"grant_type": "password", "username": email, "password": password}
    if scope:
        data["scope"] = scope
    response = httpx.post(f"{url}/api/v1/auth/token", data=data, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_run(api: Api, run_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "canceled"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s: {run}")
