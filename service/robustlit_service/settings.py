"""Service settings, read from ``ROBUSTLIT_*`` environment variables with zero-configuration defaults."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from robustlit.errors import ConfigError


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be positive")
    return value


def _secret_key(home: Path) -> str:
    """The JWT signing key: ``ROBUSTLIT_SECRET_KEY``, or one generated once and kept in ``home``."""
    configured = os.environ.get("ROBUSTLIT_SECRET_KEY")
    if configured:
        return configured
    path = home / "secret_key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key)
        return key
    except FileExistsError:  # pragma: no cover - a concurrent replica created it first
        return path.read_text(encoding="utf-8").strip()


def default_program(name: str) -> str:
    """``name`` next to this Python (the same virtual environment), else ``name`` looked up on ``PATH``.

    Example:
        >>> default_program("robustlit-train").endswith("robustlit-train")
        True
    """
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else name


def normalize_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs.

    Example:
        >>> normalize_database_url("postgresql://u@h/db")
        'postgresql+psycopg://u@h/db'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass
class Settings:
    """Everything the service can be told; :meth:`from_env` fills it from the environment.

    Args:
        home: Data folder (SQLite file, job folders, artifacts); ``ROBUSTLIT_HOME``, default ``./.robustlit``.
        database_url: SQLAlchemy URL; ``ROBUSTLIT_DATABASE_URL``, default a SQLite file in ``home``.
        redis_url: ``ROBUSTLIT_REDIS_URL``; when set, rate limits and the job queue are shared through Redis.
        secret_key: HMAC key of the service's JWTs.
        access_token_ttl: Lifetime of access tokens in seconds (``ROBUSTLIT_ACCESS_TOKEN_TTL``).
        refresh_token_ttl: Lifetime of refresh tokens in seconds.
        rate_limit: Requests per ``rate_window`` seconds allowed per API key or user (``ROBUSTLIT_RATE_LIMIT``).
        rate_window: Window of the rate limit in seconds.
        project_queue_limit: Most unfinished runs per project (``ROBUSTLIT_PROJECT_QUEUE_LIMIT``).
        max_running: Most jobs this replica runs at once (``ROBUSTLIT_MAX_RUNNING``).
        worker: Whether this process dispatches jobs and webhooks (``ROBUSTLIT_WORKER``, default 1).
        poll_interval: Seconds between dispatcher passes.
        train_command: Program of train jobs (``ROBUSTLIT_TRAIN_COMMAND``, split like a shell would).
        eval_command: Program of evaluation jobs (``ROBUSTLIT_EVAL_COMMAND``).
        webhook_max_attempts: Delivery attempts before a webhook delivery is given up.
        webhook_backoff: Base delay in seconds of the exponential webhook backoff.
        s3_bucket: ``ROBUSTLIT_S3_BUCKET``; when set, finished runs' artifacts are uploaded there.
        s3_endpoint_url: ``ROBUSTLIT_S3_ENDPOINT_URL`` for S3-compatible servers (MinIO …).
        s3_prefix: Key prefix inside the bucket.
        oidc_issuer: ``ROBUSTLIT_OIDC_ISSUER``: accept RS/ES-signed JWTs from this issuer.
        oidc_jwks: ``ROBUSTLIT_OIDC_JWKS``: the issuer's key set, as a URL or a file path.
        oidc_audience: ``ROBUSTLIT_OIDC_AUDIENCE``: required ``aud`` claim of OIDC tokens.

    Example:
        >>> Settings.from_env().database_url.startswith(("sqlite", "postgresql"))  # doctest: +SKIP
        True
    """

    home: Path
    database_url: str
    redis_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48), repr=False)
    access_token_ttl: int = 900
    refresh_token_ttl: int = 14 * 24 * 3600
    rate_limit: int = 1200
    rate_window: int = 60
    project_queue_limit: int = 100
    max_running: int = 2
    worker: bool = True
    poll_interval: float = 0.5
    train_command: list[str] = field(default_factory=lambda: ["robustlit-train"])
    eval_command: list[str] = field(default_factory=lambda: ["robustlit-eval"])
    webhook_max_attempts: int = 6
    webhook_backoff: float = 1.0
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "runs"
    oidc_issuer: str | None = None
    oidc_jwks: str | None = None
    oidc_audience: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from ``ROBUSTLIT_*`` variables; creates the data folder."""
        import shlex

        home = Path(os.environ.get("ROBUSTLIT_HOME") or ".robustlit").resolve()
        home.mkdir(parents=True, exist_ok=True)
        database_url = normalize_database_url(
            os.environ.get("ROBUSTLIT_DATABASE_URL") or f"sqlite:///{home / 'robustlit.db'}"
        )
        worker = os.environ.get("ROBUSTLIT_WORKER", "1").strip().lower()
        if worker not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"ROBUSTLIT_WORKER={worker!r} must be 0 or 1")
        return cls(
            home=home,
            database_url=database_url,
            redis_url=os.environ.get("ROBUSTLIT_REDIS_URL") or None,
            secret_key=_secret_key(home),
            access_token_ttl=_int("ROBUSTLIT_ACCESS_TOKEN_TTL", 900, 1),
            refresh_token_ttl=_int("ROBUSTLIT_REFRESH_TOKEN_TTL", 14 * 24 * 3600, 1),
            rate_limit=_int("ROBUSTLIT_RATE_LIMIT", 1200, 1),
            rate_window=_int("ROBUSTLIT_RATE_WINDOW", 60, 1),
            project_queue_limit=_int("ROBUSTLIT_PROJECT_QUEUE_LIMIT", 100, 1),
            max_running=_int("ROBUSTLIT_MAX_RUNNING", 2, 1),
            worker=worker in ("1", "true", "yes"),
            poll_interval=_float("ROBUSTLIT_POLL_INTERVAL", 0.5),
            train_command=shlex.split(os.environ.get("ROBUSTLIT_TRAIN_COMMAND") or "")
            or [default_program("robustlit-train")],
            eval_command=shlex.split(os.environ.get("ROBUSTLIT_EVAL_COMMAND") or "")
            or [default_program("robustlit-eval")],
            webhook_max_attempts=_int("ROBUSTLIT_WEBHOOK_MAX_ATTEMPTS", 6, 1),
            webhook_backoff=_float("ROBUSTLIT_WEBHOOK_BACKOFF", 1.0),
            s3_bucket=os.environ.get("ROBUSTLIT_S3_BUCKET") or None,
            s3_endpoint_url=os.environ.get("ROBUSTLIT_S3_ENDPOINT_URL") or None,
            s3_prefix=os.environ.get("ROBUSTLIT_S3_PREFIX", "runs").strip("/"),
            oidc_issuer=os.environ.get("ROBUSTLIT_OIDC_ISSUER") or None,
            oidc_jwks=os.environ.get("ROBUSTLIT_OIDC_JWKS") or None,
            oidc_audience=os.environ.get("ROBUSTLIT_OIDC_AUDIENCE") or None,
        )

    @property
    def jobs_dir(self) -> Path:
        """Where the launcher keeps job folders (pid, exit code, log)."""
        return self.home / "jobs"

    @property
    def runs_dir(self) -> Path:
        """Where runs write their outputs (Hydra run dirs), one folder per run id."""
        return self.home / "runs"
