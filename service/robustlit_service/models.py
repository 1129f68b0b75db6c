"""Database tables (SQLModel): users, keys, projects, catalog, runs, metrics, artifacts, webhooks, audit log."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

RUN_STATUSES = ("queued", "starting", "running", "succeeded", "failed", "canceled")
UNFINISHED = ("queued", "starting", "running")
ROLES = ("viewer", "editor", "admin")


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware).

    Example:
        >>> utcnow().tzinfo is not None
        True
    """
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every database (SQLite forgets the zone; this puts UTC back).

    Example:
        >>> UtcDateTime().process_result_value(datetime(2026, 1, 1), None).tzinfo
        datetime.timezone.utc
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Store UTC."""
        if value is not None and value.tzinfo is not None:
            return value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Read as UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def _time(nullable: bool = False, index: bool = False) -> Any:
    column = Column(UtcDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


def _json(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


class User(SQLModel, table=True):
    """A person (or an OIDC subject); ``is_admin`` grants ``admin:all``."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    password_hash: str | None = Field(default=None, max_length=300)
    oidc_subject: str | None = Field(default=None, max_length=300, unique=True)
    is_admin: bool = False
    disabled: bool = False
    created_at: datetime = _time()


class ApiKey(SQLModel, table=True):
    """An API key: only the SHA-256 of its secret is stored."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=32, unique=True, index=True)
    secret_hash: str = Field(max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=200)
    scopes: str = Field(max_length=500)
    created_at: datetime = _time()
    expires_at: datetime | None = _time(nullable=True)
    revoked_at: datetime | None = _time(nullable=True)
    last_used_at: datetime | None = _time(nullable=True)


class RefreshToken(SQLModel, table=True):
    """A refresh token (hashed); rotated on every use, and a reused one revokes its whole family."""

    __tablename__ = "refresh_tokens"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    family: str = Field(max_length=64, index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    api_key_id: int | None = Field(default=None, foreign_key="api_keys.id")
    scopes: str = Field(max_length=500)
    created_at: datetime = _time()
    expires_at: datetime = _time()
    revoked_at: datetime | None = _time(nullable=True)


class Project(SQLModel, table=True):
    """A project: the unit of access control."""

    __tablename__ = "projects"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    description: str = Field(default="", max_length=2000)
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _time()


class Membership(SQLModel, table=True):
    """A user's role (viewer, editor, admin) in one project."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    role: str = Field(max_length=16)
    created_at: datetime = _time()


class Dataset(SQLModel, table=True):
    """A registered dataset (a name for a ``data=`` config and its location)."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    name: str = Field(max_length=200)
    uri: str = Field(default="", max_length=2000)
    description: str = Field(default="", max_length=2000)
    created_at: datetime = _time()


class RegisteredModel(SQLModel, table=True):
    """One version of a registered model (a checkpoint that evaluation runs can load)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    name: str = Field(max_length=200)
    version: int
    uri: str = Field(max_length=2000)
    description: str = Field(default="", max_length=2000)
    source_run_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = _time()


class Recipe(SQLModel, table=True):
    """One version of a stored recipe: a template from ``conf/recipe`` plus Hydra overrides."""

    __tablename__ = "recipes"
    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    name: str = Field(max_length=200)
    version: int
    base: str | None = Field(default=None, max_length=200)
    overrides: list[str] = _json()
    description: str = Field(default="", max_length=2000)
    created_at: datetime = _time()


class ExperimentRun(SQLModel, table=True):
    """A train or evaluation run and its job's life cycle."""

    __tablename__ = "experiment_runs"
    __table_args__ = (Index("ix_experiment_runs_project_status", "project_id", "status"),)
    id: str = Field(primary_key=True, max_length=32)
    project_id: int = Field(foreign_key="projects.id")
    group_id: str = Field(max_length=32, index=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    status: str = Field(max_length=16, index=True)
    recipe: str | None = Field(default=None, max_length=200)
    overrides: list[str] = _json()
    seed: int | None = None
    model_id: int | None = Field(default=None, foreign_key="models.id")
    command: list[str] = _json()
    handle: str | None = Field(default=None, max_length=200)
    output_dir: str = Field(max_length=2000)
    error: str | None = Field(default=None, max_length=4000)
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _time(index=True)
    claimed_at: datetime | None = _time(nullable=True)
    started_at: datetime | None = _time(nullable=True)
    finished_at: datetime | None = _time(nullable=True)


class IdempotencyKey(SQLModel, table=True):
    """``Idempotency-Key`` of a submission: the same key and body give the same run."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=64)
    key: str = Field(max_length=200)
    request_hash: str = Field(max_length=64)
    run_id: str = Field(foreign_key="experiment_runs.id", max_length=32)
    created_at: datetime = _time()


class MetricRow(SQLModel, table=True):
    """One metric of a run's report."""

    __tablename__ = "metrics"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="experiment_runs.id", index=True, max_length=32)
    suite: str = Field(max_length=100)
    name: str = Field(max_length=200)
    value: float
    context: dict[str, Any] = _json()


class ArtifactRow(SQLModel, table=True):
    """One file of a run: its report, its log, plots; ``uri`` is where the artifact store keeps it."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="experiment_runs.id", index=True, max_length=32)
    name: str = Field(max_length=500)
    type: str = Field(max_length=50)
    uri: str = Field(max_length=2000)
    size: int | None = None


class Webhook(SQLModel, table=True):
    """A project's webhook: events are POSTed to ``url`` and signed with ``secret``."""

    __tablename__ = "webhooks"
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=200)
    events: list[str] = _json()
    active: bool = True
    created_at: datetime = _time()


class WebhookDelivery(SQLModel, table=True):
    """The delivery log: one row per event sent to a webhook, with its attempts."""

    __tablename__ = "webhook_deliveries"
    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhooks.id", index=True)
    event: str = Field(max_length=50)
    payload: str
    status: str = Field(max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = _time(index=True)
    claimed_until: datetime | None = _time(nullable=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _time()
    delivered_at: datetime | None = _time(nullable=True)


class AuditLog(SQLModel, table=True):
    """Who changed what, and every run's execution steps."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(index=True)
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    action: str = Field(max_length=100, index=True)
    target_type: str = Field(max_length=50)
    target_id: str = Field(max_length=100)
    project_id: int | None = Field(default=None, index=True)
    details: dict[str, Any] = _json(nullable=True)
    request_id: str | None = Field(default=None, max_length=64)
