"""What a backend runs (:class:`Job`), the states it reports (:class:`JobStatus`) and the backend interface."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from robustlit.errors import RobustlitError


class LauncherError(RobustlitError):
    """A job cannot be submitted, found or controlled; the message says which option or handle is at fault."""


class JobNotFoundError(LauncherError, KeyError):
    """No job with this handle is known to the backend."""

    def __str__(self) -> str:
        # KeyError quotes its argument; show the message as written
        return str(self.args[0]) if self.args else ""


class JobStatus(str, enum.Enum):
    """Lifecycle of a job, the same for every backend.

    Example:
        >>> JobStatus("running") is JobStatus.RUNNING, JobStatus.CANCELED.finished
        (True, True)
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        """Whether the job has stopped for good (succeeded, failed or canceled)."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass
class Job:
    """A command to run: argv list, working directory and extra environment variables.

    Args:
        command: Program and arguments, e.g. ``["robustlit-train", "trainer=debug"]``; no shell is involved.
        workdir: Directory the command runs in.
        env: Variables added to (and overriding) the backend's environment.
        name: Human-readable label; backends use it in job names where they have them.

    Example:
        >>> Job(["robustlit-train", "trainer=debug"], workdir="/tmp", name="smoke").command[0]
        'robustlit-train'
    """

    command: list[str]
    workdir: str
    env: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.command, str) or not self.command or not all(isinstance(a, str) for a in self.command):
            raise LauncherError(f"Job.command must be a non-empty list of strings, got {self.command!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise LauncherError("Job.env must map strings to strings")


class Backend(ABC):
    """One interface over every place a job can run: ``submit`` returns a handle the other methods take.

    Example:
        >>> backend = get_backend("local", root=Path("runs/jobs"))  # doctest: +SKIP
        >>> handle = backend.submit(Job(["echo", "hi"], workdir="."))  # doctest: +SKIP
    """

    @abstractmethod
    def submit(self, job: Job) -> str:
        """Start ``job`` and return its handle (a string that is stable across processes)."""

    @abstractmethod
    def status(self, handle: str) -> JobStatus:
        """The job's current state."""

    @abstractmethod
    def cancel(self, handle: str) -> None:
        """Stop the job and everything it started; a no-op once the job has finished."""

    @abstractmethod
    def logs(self, handle: str, offset: int = 0) -> str:
        """The job's combined stdout and stderr from character ``offset`` on (``""`` when nothing is new)."""
