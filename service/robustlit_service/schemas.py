"""Request and response bodies of the REST API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")
MAX_ID = 2**31 - 1
OVERRIDE = re.compile(r"^[~+]{0,2}[A-Za-z_][\w./@\-]*(=.*)?$", re.DOTALL)
RESERVED = ("hydra.run", "hydra.sweep", "output_dir", "hydra.job.chdir")
EVENTS = ("run_completed", "run_failed")


def _printable(value: str) -> str:
    if any(ord(ch) < 32 and ch not in "\t" for ch in value):
        raise ValueError("control characters (newlines, NUL …) are not allowed")
    return value


def _override(value: str) -> str:
    if not OVERRIDE.match(value):
        raise ValueError(f"{value!r} is not a Hydra override like key=value, +key=value or ~key")
    key = value.lstrip("~+").split("=", 1)[0]
    if any(key == reserved or key.startswith(reserved + ".") for reserved in RESERVED):
        raise ValueError(f"{key} is set by the service (each run writes to its own folder)")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
                 AfterValidator(_printable)]
Text = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_printable)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_printable)]
Override = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_printable),
                     AfterValidator(_override)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+$")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Seed = Annotated[int, Field(ge=0, le=MAX_ID)]
Role = Literal["viewer", "editor", "admin"]
Scope = Literal["projects:read", "projects:write", "runs:read", "runs:write", "admin:all"]


class Body(BaseModel):
    """Request bodies refuse unknown fields."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code``, a message naming the field or option, and details."""

    code: str
    message: str
    details: Any = None
    request_id: str | None = None


class ErrorOut(BaseModel):
    """The one error shape of the API."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in ((400, "bad request"), (401, "missing or invalid credentials"),
                                (403, "insufficient scope or role"), (404, "not found"), (409, "conflict"),
                                (422, "invalid input"), (429, "rate limited or queue full"))
}


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Items(BaseModel, Generic[T]):
    """A whole list."""

    items: list[T]


class TokenOut(BaseModel):
    """OAuth2 token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str
    scope: str


class UserCreate(Body):
    """A new user; the very first one may be created without credentials and becomes the admin."""

    email: Email
    password: Annotated[str, StringConstraints(min_length=8, max_length=200)]
    is_admin: bool = False


class UserOut(BaseModel):
    """A user, without secrets."""

    id: int
    email: str
    is_admin: bool
    created_at: datetime


class ApiKeyCreate(Body):
    """A new API key for the caller."""

    name: Name
    scopes: list[Scope] | None = Field(default=None, max_length=5, description="default: all the caller may have")
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class ApiKeyOut(BaseModel):
    """An API key's metadata (never its secret)."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new API key: ``key`` is shown this once and stored only as a hash."""

    key: str


class ProjectCreate(Body):
    """A new project; its creator becomes its admin."""

    name: Name
    description: Text = ""


class ProjectUpdate(Body):
    """Changes to a project."""

    name: Name | None = None
    description: Text | None = None


class ProjectOut(BaseModel):
    """A project and the caller's role in it."""

    id: int
    name: str
    description: str
    created_at: datetime
    role: str


class MemberIn(Body):
    """Give a user (by email) a role in a project."""

    email: Email
    role: Role


class MemberOut(BaseModel):
    """A project member."""

    user_id: int
    email: str
    role: str


class DatasetIn(Body):
    """A dataset: a name, where it lives, and what it is."""

    name: Name
    uri: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_printable)] = ""
    description: Text = ""


class DatasetUpdate(Body):
    """Changes to a dataset."""

    uri: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_printable)] | None = None
    description: Text | None = None


class DatasetOut(BaseModel):
    """A registered dataset."""

    id: int
    project_id: int
    name: str
    uri: str
    description: str
    created_at: datetime


class ModelIn(Body):
    """A new version of a model (the version number is assigned)."""

    name: Name
    uri: Uri = Field(description="checkpoint path or URI that robustlit-eval can load")
    description: Text = ""
    source_run_id: Annotated[str, StringConstraints(max_length=32, pattern=r"^[0-9a-f]{1,32}$")] | None = None


class ModelOut(BaseModel):
    """One version of a registered model."""

    id: int
    project_id: int
    name: str
    version: int
    uri: str
    description: str
    source_run_id: str | None
    created_at: datetime


class RecipeIn(Body):
    """A new version of a recipe: a template from ``GET /recipes/templates`` plus Hydra overrides."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
    base: Annotated[str, StringConstraints(max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")] | None = None
    overrides: list[Override] = Field(default_factory=list, max_length=100)
    description: Text = ""


class RecipeOut(BaseModel):
    """One version of a stored recipe."""

    id: int
    project_id: int
    name: str
    version: int
    base: str | None
    overrides: list[str]
    description: str
    created_at: datetime


class TemplateOut(BaseModel):
    """A recipe file shipped in ``conf/recipe``."""

    name: str
    description: str
    content: str


class RunCreate(Body):
    """A train run: a recipe (stored in the project, or a template) and Hydra overrides."""

    recipe: Annotated[str, StringConstraints(min_length=1, max_length=110,
                                             pattern=r"^[A-Za-z0-9_.\-]+(:[0-9]{1,9})?$")] | None = Field(
        default=None, description="a stored recipe 'name' or 'name:version', or a template name")
    overrides: list[Override] = Field(default_factory=list, max_length=100)
    seeds: list[Seed] | None = Field(default=None, min_length=1, max_length=20,
                                     description="one run per seed, sharing a group_id; the first is returned")
    name: Name | None = None


class EvaluateCreate(Body):
    """An evaluation run of a registered model version or a checkpoint."""

    project_id: Id
    model_id: Id | None = None
    checkpoint: Uri | None = None
    overrides: list[Override] = Field(default_factory=list, max_length=100)
    name: Name | None = None


class RunOut(BaseModel):
    """A run."""

    id: str
    project_id: int
    group_id: str
    name: str
    kind: str
    status: str
    recipe: str | None
    overrides: list[str]
    seed: int | None
    model_id: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class MetricOut(BaseModel):
    """A metric from the run's report."""

    suite: str
    name: str
    value: float
    context: dict[str, Any]


class ArtifactOut(BaseModel):
    """A file of the run; ``download_url`` is ``None`` for files kept outside the run folder."""

    name: str
    type: str
    size: int | None
    download_url: str | None


class WebhookIn(Body):
    """A webhook: ``url`` receives the chosen events, signed with ``secret`` (generated when omitted)."""

    url: Annotated[str, StringConstraints(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]
    events: list[Literal["run_completed", "run_failed"]] = Field(default_factory=lambda: list(EVENTS),
                                                                min_length=1, max_length=2)
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200), AfterValidator(_printable)] | None = None


class WebhookOut(BaseModel):
    """A webhook (its secret is shown only when created)."""

    id: int
    project_id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    """A new webhook with its signing secret."""

    secret: str


class WebhookTest(Body):
    """Send a ``ping`` event to a webhook now."""

    webhook_id: Id


class DeliveryOut(BaseModel):
    """One entry of the webhook delivery log."""

    id: int
    webhook_id: int
    event: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


class AuditOut(BaseModel):
    """One audit-log entry."""

    id: int
    at: datetime
    actor_id: int | None
    action: str
    target_type: str
    target_id: str
    project_id: int | None
    details: dict[str, Any] | None
    request_id: str | None
