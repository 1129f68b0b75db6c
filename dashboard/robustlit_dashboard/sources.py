"""Where the dashboard reads runs from: a runs folder on disk, or the robustlit service's REST API.

Both sources answer the same questions (which runs exist, a run's report, its plots and its log); the API source
also reaches projects, the registry, recipes and run submission, which a folder cannot offer.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from robustlit.errors import RobustlitError
from robustlit.reporting import REPORT_FILENAME, Report, ReportError, read_report
from robustlit.reporting.plots import Chart, alt_text
from robustlit.reporting.sections import IMAGE_SUFFIXES, RunSource, artifact_path

API_PREFIX = "/api/v1"
ENV_RUNS = "ROBUSTLIT_DASHBOARD_RUNS"
ENV_API = "ROBUSTLIT_API_URL"
ENV_API_KEY = "ROBUSTLIT_API_KEY"
ACTIVE = ("queued", "starting", "running")


class SourceError(RobustlitError):
    """The runs folder or the service cannot answer; the message says what to fix.

    Example:
        >>> raise SourceError("--runs /nope is not a folder; pass the folder that holds your runs")
        Traceback (most recent call last):
        ...
        robustlit_dashboard.sources.SourceError: --runs /nope is not a folder; pass the folder that holds your runs
    """


@dataclass
class RunRef:
    """A run as listed: id, display name, status and where it came from.

    Example:
        >>> RunRef("a1", "baseline", "succeeded").active
        False
    """

    id: str
    name: str
    status: str
    project: str | None = None
    created_at: str | None = None
    location: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether the run is still queued or running."""
        return self.status in ACTIVE


@dataclass
class LogChunk:
    """Log text from an offset on, the offset to ask for next, and the run's status when known.

    Example:
        >>> LogChunk("epoch 1", 7, "running").next_offset
        7
    """

    text: str
    next_offset: int
    status: str | None = None


class DataSource(ABC):
    """What the dashboard pages read: runs, their reports, plots and logs.

    Example:
        >>> source = FolderSource("runs")  # doctest: +SKIP
        >>> source.report(source.runs()[0][0].id).run.name  # doctest: +SKIP
        'pgd_at_ls'
    """

    kind: str = ""
    has_api: bool = False
    """Whether the API-only pages (recipes, launcher, registry, share links) work on this source."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One line naming the source, for the sidebar."""

    @abstractmethod
    def runs(self, limit: int = 100, offset: int = 0) -> tuple[list[RunRef], int]:
        """Runs, newest first, and how many there are in all."""

    @abstractmethod
    def report(self, run_id: str) -> Report | None:
        """The run's report, or ``None`` while it has none (e.g. still running)."""

    @abstractmethod
    def plots(self, run_id: str) -> list[Chart]:
        """The run's plot artifacts (PNG/JPEG) with their alt text."""

    @abstractmethod
    def logs(self, run_id: str, offset: int = 0) -> LogChunk:
        """The run's log from character ``offset`` on."""

    def run_source(self, run_id: str, label: str | None = None) -> RunSource | None:
        """The run as :class:`~robustlit.reporting.sections.RunSource`, for building exports."""
        report = self.report(run_id)
        return RunSource(label or report.run.name, report, None) if report is not None else None

    def share_link(self, run_id: str) -> str | None:
        """A link to the run that others can open, or ``None`` when the source has none."""
        return None


class FolderSource(DataSource):
    """Runs found by searching a folder recursively for ``robustness_report.json``.

    Args:
        root: The folder, e.g. ``runs/``.

    Raises:
        SourceError: If ``root`` is not a folder.

    Example:
        >>> FolderSource("runs/demo").runs()[1]  # doctest: +SKIP
        2
    """

    kind = "folder"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise SourceError(f"--runs {root} is not a folder; pass the folder that holds your runs")
        self._cache: dict[Path, tuple[float, Report | None]] = {}

    @property
    def description(self) -> str:
        """The folder path."""
        return f"runs folder {self.root}"

    def _folders(self) -> dict[str, Path]:
        folders = {}
        for file in sorted(self.root.rglob(REPORT_FILENAME)):
            folders[file.parent.relative_to(self.root).as_posix() or "."] = file.parent
        return folders

    def _read(self, folder: Path) -> Report | None:
        file = folder / REPORT_FILENAME
        mtime = file.stat().st_mtime
        cached = self._cache.get(file)
        if cached is None or cached[0] != mtime:
            try:
                cached = (mtime, read_report(file))
            except ReportError:
                cached = (mtime, None)
            self._cache[file] = cached
        return cached[1]

    def runs(self, limit: int = 100, offset: int = 0) -> tuple[list[RunRef], int]:
        """Runs whose report is valid, newest ``finished_at`` first; a run's id is its folder under the root."""
        refs = []
        for run_id, folder in self._folders().items():
            report = self._read(folder)
            if report is not None:
                refs.append(RunRef(run_id, report.run.name, "succeeded", None, report.run.finished_at, str(folder),
                                   {"type": report.run.type, "model": report.model.name, "data": report.data.name}))
        refs.sort(key=lambda ref: ref.created_at or "", reverse=True)
        return refs[offset:offset + limit], len(refs)

    def _folder(self, run_id: str) -> Path:
        folder = (self.root / run_id).resolve()
        if not folder.is_relative_to(self.root) or not (folder / REPORT_FILENAME).is_file():
            raise SourceError(f"no run {run_id!r} under {self.root}")
        return folder

    def report(self, run_id: str) -> Report | None:
        """The report in the run's folder."""
        return self._read(self._folder(run_id))

    def run_source(self, run_id: str, label: str | None = None) -> RunSource | None:
        """The run with its folder, so relative artifact paths resolve."""
        folder = self._folder(run_id)
        report = self._read(folder)
        return RunSource(label or folder.name, report, folder) if report is not None else None

    def plots(self, run_id: str) -> list[Chart]:
        """Plot artifacts listed in the report that exist on disk."""
        source = self.run_source(run_id)
        if source is None:
            return []
        charts = []
        for artifact in source.report.artifacts:
            path = artifact_path(source, artifact.uri)
            if artifact.type in ("plot", "plots") and path is not None and path.suffix.lower() in IMAGE_SUFFIXES:
                charts.append(Chart(path.name, artifact.name, alt_text(path) or f"Plot {artifact.name} of the run.",
                                    path.read_bytes()))
        return charts

    def logs(self, run_id: str, offset: int = 0) -> LogChunk:
        """The run folder's ``*.log`` files (Hydra's job log, the service's ``job.log``), concatenated."""
        folder = self._folder(run_id)
        text = "".join(path.read_text(encoding="utf-8", errors="replace") for path in sorted(folder.glob("*.log")))
        return LogChunk(text[offset:], len(text), "succeeded")


class ApiSource(DataSource):
    """The robustlit service's REST API (``/api/v1``), authenticated with an API key.

    Args:
        base_url: Service root, e.g. ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer <key>``.
        timeout: Seconds per request.

    Example:
        >>> source = ApiSource("http://127.0.0.1:8000", "rl_…")  # doctest: +SKIP
        >>> source.projects()[0]["name"]  # doctest: +SKIP
        'default'
    """

    kind = "api"
    has_api = True

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 10.0) -> None:
        import requests

        if not base_url.startswith(("http://", "https://")):
            raise SourceError(f"--api {base_url!r} must be an http(s) URL such as http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/").removesuffix(API_PREFIX)
        self.timeout = timeout
        self._session = requests.Session()
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    @property
    def description(self) -> str:
        """The service URL."""
        return f"service {self.base_url}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v1<path>``; JSON bodies are decoded, other bodies returned as the response.

        Raises:
            SourceError: On connection failures and error statuses, with the service's message.
        """
        import requests

        url = self.base_url + API_PREFIX + path
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise SourceError(f"cannot reach {self.base_url}: {error.__class__.__name__}; is `robustlit serve` "
                              "running and --api right?") from None
        if response.status_code >= 400:
            raise SourceError(f"{method} {path} failed with {response.status_code}: {_error_message(response)}")
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response

    def _items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        data = self.request("GET", path, params=params or None)
        return list(data["items"] if isinstance(data, dict) else data)

    def projects(self) -> list[dict[str, Any]]:
        """Projects the key can read."""
        return self._items("/projects", limit=200)

    def runs(self, limit: int = 100, offset: int = 0, project_id: int | None = None) -> tuple[list[RunRef], int]:
        """Runs of one project, or of every readable project (newest first)."""
        projects = [p for p in self.projects() if project_id is None or p["id"] == project_id]
        refs: list[RunRef] = []
        total = 0
        for project in projects:
            page = self.request("GET", f"/projects/{project['id']}/runs", params={"limit": limit + offset,
                                                                                  "offset": 0})
            total += int(page.get("total", len(page["items"])))
            refs += [_run_ref(item, project["name"]) for item in page["items"]]
        refs.sort(key=lambda ref: ref.created_at or "", reverse=True)
        return refs[offset:offset + limit], total

    def run(self, run_id: str) -> RunRef:
        """One run's current state."""
        return _run_ref(self.request("GET", f"/runs/{quote(run_id)}"), None)

    def report(self, run_id: str) -> Report | None:
        """The run's report; ``None`` while the service has none for it."""
        if self.run(run_id).active:
            return None
        try:
            return Report.from_dict(self.request("GET", f"/runs/{quote(run_id)}/report"))
        except SourceError as error:
            if " 404:" in str(error):
                return None
            raise

    def plots(self, run_id: str) -> list[Chart]:
        """Plot artifacts downloaded through their ``download_url``."""
        charts = []
        for item in self._items(f"/runs/{quote(run_id)}/artifacts"):
            url = item.get("download_url")
            if item.get("type") not in ("plot", "plots") or not url or not url.lower().endswith(IMAGE_SUFFIXES):
                continue
            response = self.request("GET", url.removeprefix(API_PREFIX))
            data = response.content if hasattr(response, "content") else bytes(response)
            charts.append(Chart(Path(item["name"]).name, item["name"], _png_alt(data) or
                                f"Plot {item['name']} of the run.", data))
        return charts

    def logs(self, run_id: str, offset: int = 0) -> LogChunk:
        """``GET /runs/{id}/logs?offset=``: text; ``X-Log-Offset`` and ``X-Run-Status`` give next offset, status."""
        response = self.request("GET", f"/runs/{quote(run_id)}/logs", params={"offset": offset})
        if isinstance(response, dict):  # a service that answers JSON
            text = str(response.get("text", ""))
            return LogChunk(text, int(response.get("next_offset", offset + len(text))), response.get("status"))
        text = response.text
        return LogChunk(text, int(response.headers.get("X-Log-Offset", offset + len(text))),
                        response.headers.get("X-Run-Status"))

    def share_link(self, run_id: str) -> str | None:
        """The API URL of the run's report."""
        return f"{self.base_url}{API_PREFIX}/runs/{quote(run_id)}/report"

    def templates(self) -> list[dict[str, Any]]:
        """Recipe templates: ``{name, description, content}``."""
        return self._items("/recipes/templates")

    def registry(self, project_id: int, kind: str) -> list[dict[str, Any]]:
        """A project's ``datasets``, ``models`` or ``recipes`` (every version)."""
        if kind not in ("datasets", "models", "recipes"):
            raise ValueError(f"unknown registry kind {kind!r}")
        return self._items(f"/projects/{project_id}/{kind}", limit=200)

    def create(self, project_id: int, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Register a dataset, a model version or a recipe version."""
        if kind not in ("datasets", "models", "recipes"):
            raise ValueError(f"unknown registry kind {kind!r}")
        return self.request("POST", f"/projects/{project_id}/{kind}", json=body)

    def submit(self, project_id: int, body: dict[str, Any]) -> RunRef:
        """``POST /projects/{id}/runs`` with ``{recipe, overrides, seeds, name}``; the first run of the group."""
        return _run_ref(self.request("POST", f"/projects/{project_id}/runs", json=body), None)


def _error_message(response: Any) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or error)
        return str(data.get("detail") or error)
    return str(data)


def _run_ref(item: dict[str, Any], project: str | None) -> RunRef:
    return RunRef(str(item["id"]), str(item.get("name") or item["id"]), str(item.get("status", "unknown")),
                  project, str(item.get("created_at") or ""), "", dict(item))


def _png_alt(data: bytes) -> str | None:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.info.get("Description")
    except OSError:
        return None


def source_from_env(environ: dict[str, str] | None = None) -> DataSource:
    """The source the dashboard was started with, from environment variables.

    ``ROBUSTLIT_API_URL`` (with ``ROBUSTLIT_API_KEY``) selects the service; otherwise ``ROBUSTLIT_DASHBOARD_RUNS``
    (default ``runs``) is the runs folder.

    Raises:
        SourceError: If the runs folder does not exist or the URL is malformed.

    Example:
        >>> source_from_env({"ROBUSTLIT_DASHBOARD_RUNS": "runs/demo"}).kind  # doctest: +SKIP
        'folder'
    """
    environ = dict(os.environ if environ is None else environ)
    if environ.get(ENV_API):
        return ApiSource(environ[ENV_API], environ.get(ENV_API_KEY))
    return FolderSource(environ.get(ENV_RUNS, "runs"))
