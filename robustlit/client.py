"""Python client of the robustlit service: launch runs, wait for them, read metrics and artifacts (no torch).

Example:
    >>> from robustlit.client import Client
    >>> client = Client(api_key="rlk_…", base_url="http://127.0.0.1:8000")  # doctest: +SKIP
    >>> run = client.launch_train(project_id=1, overrides=["data=digits", "trainer=debug"])  # doctest: +SKIP
    >>> client.wait(run["id"])["status"]  # doctest: +SKIP
    'succeeded'
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from robustlit.errors import RobustlitError

FINISHED = ("succeeded", "failed", "canceled")
RETRY_STATUSES = (429, 500, 502, 503, 504)


class ApiError(RobustlitError):
    """The service refused a request; ``status`` and ``code`` come from its JSON error.

    Example:
        >>> str(ApiError(404, "not_found", "run 'x' does not exist"))
        "404 not_found: run 'x' does not exist"
    """

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class RunFailedError(RobustlitError):
    """A run waited on ended as failed or canceled."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(f"run {run['id']} {run['status']}: {run.get('error') or 'no error message'}")
        self.run = run


class Client:
    """A thin, retrying client of the ``/api/v1`` REST API.

    Requests that fail with 429 or 5xx, or cannot connect, are retried with exponential backoff and jitter
    (honouring ``Retry-After``). Run submissions carry an ``Idempotency-Key``, so a retried submission never
    creates a second run.

    Args:
        api_key: An API key (``rlk_…``) or an access token; default ``$ROBUSTLIT_API_KEY``.
        base_url: The service, default ``$ROBUSTLIT_URL`` or ``http://127.0.0.1:8000``.
        timeout: Seconds per request.
        max_retries: Retries after the first attempt.
        backoff: Base delay in seconds; attempt ``n`` waits about ``backoff * 2**n``.

    Example:
        >>> Client(api_key="rlk_x", base_url="http://127.0.0.1:8000/").base_url
        'http://127.0.0.1:8000'
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, timeout: float = 30.0,
                 max_retries: int = 5, backoff: float = 0.5) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise RobustlitError("the robustlit client needs httpx; pip install 'robustlit[service]'") from None
        key = api_key or os.environ.get("ROBUSTLIT_API_KEY")
        if not key:
            raise RobustlitError(
                "Client needs api_key=… (or $ROBUSTLIT_API_KEY); create one with POST /api/v1/api-keys"
            )
        if max_retries < 0 or backoff < 0:
            raise RobustlitError("max_retries and backoff must be >= 0")
        self.base_url = (base_url or os.environ.get("ROBUSTLIT_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {key}", "User-Agent": "robustlit-client"})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, idempotent: bool = False, raw: bool = False, **kwargs: Any) -> Any:
        """Send a request under ``/api/v1`` with retries; returns the decoded JSON (or text, or bytes).

        Args:
            method: HTTP method.
            path: Path below ``/api/v1``, e.g. ``/runs/abc``.
            idempotent: Send an ``Idempotency-Key`` (the same one on every retry).
            raw: Return the body as bytes, whatever its content type.
            **kwargs: Passed to :meth:`httpx.Client.request` (``json=``, ``params=`` …).

        Raises:
            ApiError: The service answered with an error that retrying did not fix.
        """
        import httpx

        headers = dict(kwargs.pop("headers", None) or {})
        if idempotent:
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        url = path if path.startswith("/api/") else f"/api/v1{path}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            return _decode(response, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return self.backoff * 2**attempt * random.uniform(0.5, 1.5)

    def launch_train(self, project_id: int, overrides: list[str] | None = None, recipe: str | None = None,
                     seeds: list[int] | None = None, name: str | None = None) -> dict[str, Any]:
        """Queue a train run (``robustlit-train`` with ``recipe`` and ``overrides``); returns the run."""
        body: dict[str, Any] = {"overrides": list(overrides or [])}
        for key, value in (("recipe", recipe), ("seeds", seeds), ("name", name)):
            if value is not None:
                body[key] = value
        return self.request("POST", f"/projects/{project_id}/runs", json=body, idempotent=True)

    def launch_eval(self, project_id: int, model_id: int | None = None, checkpoint: str | None = None,
                    overrides: list[str] | None = None, name: str | None = None) -> dict[str, Any]:
        """Queue an evaluation of a registered model version or a checkpoint; returns the run."""
        body: dict[str, Any] = {"project_id": project_id, "overrides": list(overrides or [])}
        for key, value in (("model_id", model_id), ("checkpoint", checkpoint), ("name", name)):
            if value is not None:
                body[key] = value
        return self.request("POST", "/evaluate", json=body, idempotent=True)

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's current state."""
        return self.request("GET", f"/runs/{run_id}")

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 1.0, raise_on_failure: bool = True
             ) -> dict[str, Any]:
        """Poll until the run has finished; returns it.

        Raises:
            RunFailedError: It failed or was canceled (unless ``raise_on_failure=False``).
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in FINISHED:
                if raise_on_failure and run["status"] != "succeeded":
                    raise RunFailedError(run)
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} still {run['status']} after {timeout} s")
            time.sleep(poll)

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a queued or running run."""
        return self.request("POST", f"/runs/{run_id}/cancel")

    def metrics(self, run_id: str, suite: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The run's metrics as ``{suite, name, value, context}`` dicts."""
        params = {key: value for key, value in (("suite", suite), ("name", name)) if value is not None}
        return self.request("GET", f"/runs/{run_id}/metrics", params=params)["items"]

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's artifacts as ``{name, type, size, download_url}`` dicts."""
        return self.request("GET", f"/runs/{run_id}/artifacts")["items"]

    def download(self, run_id: str, name: str, target: str | os.PathLike[str]) -> Path:
        """Save artifact ``name`` of the run to ``target`` (a file, or a folder to put it in)."""
        data = self.request("GET", f"/runs/{run_id}/artifacts/{name}", raw=True)
        path = Path(target)
        if path.is_dir():
            path = path / Path(name).name
        path.write_bytes(data)
        return path

    def report(self, run_id: str) -> dict[str, Any]:
        """The run's ``robustness_report.json``."""
        return self.request("GET", f"/runs/{run_id}/report")

    def logs(self, run_id: str, offset: int = 0) -> str:
        """The run's job output from character ``offset`` on."""
        return self.request("GET", f"/runs/{run_id}/logs", params={"offset": offset})


def _decode(response: Any, raw: bool = False) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            raise ApiError(response.status_code, error["code"], error["message"], error.get("details"))
        except (ValueError, KeyError, TypeError):
            raise ApiError(response.status_code, "error", response.text[:500]) from None
    kind = response.headers.get("content-type", "")
    if raw:
        return response.content
    if response.status_code == 204:
        return None
    if kind.startswith("application/json"):
        return response.json()
    if kind.startswith("text/"):
        return response.text
    return response.content
