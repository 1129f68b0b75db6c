"""Runs: launch (train and ``/evaluate``) with idempotency and backpressure, follow, cancel, read results."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from robustlit.reporting import REPORT_FILENAME
from robustlit_service.context import (
    CALLER,
    SESSION,
    Principal,
    audit,
    require_role,
    service_of,
)
from robustlit_service.errors import ApiError, not_found
from robustlit_service.models import ArtifactRow, ExperimentRun, IdempotencyKey, MetricRow, Recipe, utcnow
from robustlit_service.routes.catalog import _check_overrides, get_model, template_names
from robustlit_service.routes.common import Filter, Limit, Offset, get_project, get_run, paginate, run_out
from robustlit_service.routes.projects import queue_length
from robustlit_service.schemas import ArtifactOut, EvaluateCreate, Id, Items, MetricOut, Page, RunCreate, RunOut
from robustlit_service.storage import content_type, safe_relative

router = APIRouter(tags=["runs"])
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                                 pattern=r"^[\x21-\x7e]{1,200}$")]


def _body_hash(path: str, body: Any) -> str:
    canonical = json.dumps({"path": path, "body": body.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, owner: str, key: str | None, digest: str) -> ExperimentRun | None:
    if key is None:
        return None
    record = session.exec(select(IdempotencyKey).where(IdempotencyKey.owner == owner,
                                                       IdempotencyKey.key == key)).first()
    if record is None:
        return None
    if record.request_hash != digest:
        raise ApiError(422, "idempotency_key_reused",
                       f"Idempotency-Key {key!r} was used with a different request; use a new key for new requests")
    return session.get(ExperimentRun, record.run_id)


def _submit(request: Request, response: Response, session: Session, principal: Principal, project_id: int,
            runs: list[ExperimentRun], key: str | None, digest: str) -> RunOut:
    """Insert ``runs`` (and the idempotency record) and commit before answering, then wake the dispatcher."""
    service = service_of(request)
    owner = f"user{principal.user.id}"
    limit = service.settings.project_queue_limit
    if queue_length(session, project_id) + len(runs) > limit:
        raise ApiError(429, "queue_full",
                       f"project {project_id} already has {limit} unfinished runs (ROBUSTLIT_PROJECT_QUEUE_LIMIT); "
                       "wait for some to finish", headers={"Retry-After": "30"})
    for run in runs:
        session.add(run)
        audit(session, principal, "run.create", "run", run.id, project_id, kind=run.kind, overrides=run.overrides)
    if key is not None:
        session.add(IdempotencyKey(owner=owner, key=key, request_hash=digest, run_id=runs[0].id))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = _replay(session, owner, key, digest)
        if existing is None:
            raise
        response.status_code = 200
        return run_out(existing)
    for run in runs:
        # the run is committed; if the wake-up fails, the dispatcher's next poll finds it
        with contextlib.suppress(Exception):
            service.wake.notify(run.id)
    response.status_code = 201
    return run_out(runs[0])


def _new_run(settings_home: Path, project_id: int, kind: str, name: str, principal: Principal, overrides: list[str],
             group_id: str | None, **fields: Any) -> ExperimentRun:
    run_id = uuid.uuid4().hex
    return ExperimentRun(id=run_id, project_id=project_id, group_id=group_id or run_id, name=name, kind=kind,
                         status="queued", overrides=overrides, command=[], created_by=principal.user.id,
                         output_dir=str(settings_home / run_id), created_at=utcnow(), **fields)


@router.post("/projects/{project_id}/runs", response_model=RunOut, status_code=201,
             responses={200: {"model": RunOut, "description": "replayed: the run of an earlier identical request"}})
def create_run(project_id: Id, body: RunCreate, request: Request, response: Response,
               idempotency_key: IdempotencyHeader = None, principal: Principal = CALLER,
               session: Session = SESSION) -> RunOut:
    """Queue a train run (one per seed). The same ``Idempotency-Key`` and body return the same run."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "runs:write")
    digest = _body_hash(request.url.path, body)
    existing = _replay(session, f"user{principal.user.id}", idempotency_key, digest)
    if existing is not None:
        response.status_code = 200
        return run_out(existing)
    if body.recipe is not None:
        _check_recipe(session, project_id, body.recipe)
    _check_overrides(body.overrides, "overrides")
    runs_dir = service_of(request).settings.runs_dir
    seeds: list[int | None] = list(body.seeds) if body.seeds else [None]
    base_name = body.name or body.recipe or "train"
    runs: list[ExperimentRun] = []
    for seed in seeds:
        name = base_name if seed is None or len(seeds) == 1 else f"{base_name}-seed{seed}"
        runs.append(_new_run(runs_dir, project_id, "train", name, principal, list(body.overrides),
                             runs[0].id if runs else None, recipe=body.recipe, seed=seed))
    return _submit(request, response, session, principal, project_id, runs, idempotency_key, digest)


def _check_recipe(session: Session, project_id: int, recipe: str) -> None:
    name, _, version = recipe.partition(":")
    query = select(Recipe.id).where(Recipe.project_id == project_id, Recipe.name == name)
    if version:
        query = query.where(Recipe.version == int(version))
    if session.exec(query).first() is not None:
        return
    if not version and name in template_names():
        return
    raise ApiError(422, "invalid_request", f"recipe: {recipe!r} is neither a stored recipe of project {project_id} "
                   f"nor a template ({', '.join(sorted(template_names()))})")


@router.post("/evaluate", response_model=RunOut, status_code=201, tags=["runs"],
             responses={200: {"model": RunOut, "description": "replayed: the run of an earlier identical request"}})
def evaluate(body: EvaluateCreate, request: Request, response: Response, idempotency_key: IdempotencyHeader = None,
             principal: Principal = CALLER, session: Session = SESSION) -> RunOut:
    """Queue an evaluation of a registered model version (``model_id``) or a checkpoint path."""
    get_project(session, body.project_id)
    require_role(session, principal, body.project_id, "editor", "runs:write")
    if (body.model_id is None) == (body.checkpoint is None):
        raise ApiError(422, "invalid_request", "give exactly one of model_id and checkpoint")
    digest = _body_hash(request.url.path, body)
    existing = _replay(session, f"user{principal.user.id}", idempotency_key, digest)
    if existing is not None:
        response.status_code = 200
        return run_out(existing)
    overrides = list(body.overrides)
    name = body.name or "evaluate"
    if body.model_id is not None:
        model = get_model(session, body.model_id, body.project_id)
        name = body.name or f"{model.name}:v{model.version}"
    else:
        overrides = [f"model.checkpoint={_hydra_value(body.checkpoint or '')}", *overrides]
    _check_overrides(overrides, "overrides")
    run = _new_run(service_of(request).settings.runs_dir, body.project_id, "evaluate", name, principal, overrides,
                   None, model_id=body.model_id)
    return _submit(request, response, session, principal, body.project_id, [run], idempotency_key, digest)


def _hydra_value(value: str) -> str:
    from robustlit_service.jobs import hydra_value

    return hydra_value(value)


@router.get("/projects/{project_id}/runs", response_model=Page[RunOut])
def list_runs(project_id: Id, limit: Limit = 50, offset: Offset = 0,
              status: Literal["queued", "running", "succeeded", "failed", "canceled"] | None = None,
              kind: Literal["train", "evaluate"] | None = None,
              group_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{1,32}$")] = None,
              principal: Principal = CALLER,
              session: Session = SESSION) -> Page[RunOut]:
    """The project's runs, newest first, filtered by status, kind or seed group."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "runs:read")
    query = select(ExperimentRun).where(ExperimentRun.project_id == project_id)
    if status is not None:
        statuses = ("queued", "starting") if status == "queued" else (status,)
        query = query.where(ExperimentRun.status.in_(statuses))
    if kind is not None:
        query = query.where(ExperimentRun.kind == kind)
    if group_id is not None:
        query = query.where(ExperimentRun.group_id == group_id)
    rows, total = paginate(session, query.order_by(ExperimentRun.created_at.desc(), ExperimentRun.id), limit, offset)
    return Page(items=[run_out(r) for r in rows], total=total, limit=limit, offset=offset)


def _readable_run(session: Session, principal: Principal, run_id: str) -> ExperimentRun:
    run = get_run(session, run_id)
    require_role(session, principal, run.project_id, "viewer", "runs:read")
    return run


@router.get("/runs/{run_id}", response_model=RunOut)
def read_run(run_id: str, principal: Principal = CALLER,
             session: Session = SESSION) -> RunOut:
    """One run."""
    return run_out(_readable_run(session, principal, run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: str, request: Request, principal: Principal = CALLER,
               session: Session = SESSION) -> RunOut:
    """Cancel a queued or running run; a running job's whole process group is stopped."""
    run = get_run(session, run_id)
    require_role(session, principal, run.project_id, "editor", "runs:write")
    if run.status not in ("queued", "starting", "running"):
        raise ApiError(409, "conflict", f"run {run_id} already {run.status}")
    changed = session.execute(update(ExperimentRun).where(ExperimentRun.id == run.id,
                                                          ExperimentRun.status == run.status)
                              .values(status="canceled", finished_at=utcnow(), error="canceled")).rowcount
    if changed != 1:
        session.rollback()
        raise ApiError(409, "conflict", f"run {run_id} changed state meanwhile; read it again")
    audit(session, principal, "run.cancel", "run", run.id, run.project_id, previous=run.status)
    session.commit()
    if run.handle:
        service_of(request).backend.cancel(run.handle)
    session.refresh(run)
    return run_out(run)


@router.get("/runs/{run_id}/metrics", response_model=Items[MetricOut])
def run_metrics(run_id: str, suite: Filter = None, name: Filter = None,
                principal: Principal = CALLER, session: Session = SESSION
                ) -> Items[MetricOut]:
    """The metrics of the run's report, optionally of one suite or name."""
    run = _readable_run(session, principal, run_id)
    query = select(MetricRow).where(MetricRow.run_id == run.id)
    if suite is not None:
        query = query.where(MetricRow.suite == suite)
    if name is not None:
        query = query.where(MetricRow.name == name)
    rows = session.exec(query.order_by(MetricRow.id)).all()
    return Items(items=[MetricOut(suite=m.suite, name=m.name, value=m.value, context=m.context or {}) for m in rows])


def _download_url(run_id: str, row: ArtifactRow) -> str | None:
    if row.uri.startswith(("file://", "s3://")):
        return f"/api/v1/runs/{run_id}/artifacts/{row.name}"
    return None


@router.get("/runs/{run_id}/artifacts", response_model=Items[ArtifactOut])
def run_artifacts(run_id: str, principal: Principal = CALLER,
                  session: Session = SESSION) -> Items[ArtifactOut]:
    """The run's files: report, job log, plots."""
    run = _readable_run(session, principal, run_id)
    rows = session.exec(select(ArtifactRow).where(ArtifactRow.run_id == run.id).order_by(ArtifactRow.id)).all()
    return Items(items=[ArtifactOut(name=r.name, type=r.type, size=r.size, download_url=_download_url(run.id, r))
                        for r in rows])


def _artifact(session: Session, run: ExperimentRun, name: str) -> ArtifactRow:
    row = session.exec(select(ArtifactRow).where(ArtifactRow.run_id == run.id,
                                                 ArtifactRow.name == safe_relative(name))).first()
    if row is None or _download_url(run.id, row) is None:
        raise not_found("artifact", repr(name))
    return row


@router.get("/runs/{run_id}/artifacts/{name:path}", response_model=None,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}},
                             "description": "the file (its Content-Type follows its extension)"}})
def download_artifact(run_id: str, name: str, request: Request, principal: Principal = CALLER,
                      session: Session = SESSION) -> StreamingResponse:
    """Download one artifact of the run; names cannot leave the run's folder."""
    run = _readable_run(session, principal, run_id)
    row = _artifact(session, run, name)
    chunks = service_of(request).store.open(row.uri, Path(run.output_dir), row.name)
    first = next(chunks, b"")  # surfaces a missing file as a 404 before the response starts

    def body():  # type: ignore[no-untyped-def]
        yield first
        yield from chunks

    filename = Path(row.name).name.replace('"', "")
    return StreamingResponse(body(), media_type=content_type(row.name),
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/runs/{run_id}/report", responses={200: {"content": {"application/json": {}},
                                                      "description": "the run's robustness_report.json"}})
def run_report(run_id: str, request: Request, principal: Principal = CALLER,
               session: Session = SESSION) -> JSONResponse:
    """The run's ``robustness_report.json``, once it has finished."""
    run = _readable_run(session, principal, run_id)
    row = session.exec(select(ArtifactRow).where(ArtifactRow.run_id == run.id,
                                                 ArtifactRow.name == REPORT_FILENAME)).first()
    if row is None:
        raise ApiError(404, "not_found", f"run {run_id} has no report (status: {run_out(run).status})")
    data = b"".join(service_of(request).store.open(row.uri, Path(run.output_dir), row.name))
    return JSONResponse(json.loads(data))


@router.get("/runs/{run_id}/logs", response_model=None,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "log text"}})
def run_logs(run_id: str, request: Request, offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
             principal: Principal = CALLER, session: Session = SESSION
             ) -> PlainTextResponse:
    """The job's output from character ``offset`` on; ``X-Log-Offset`` is the offset to ask for next."""
    run = _readable_run(session, principal, run_id)
    text = ""
    if run.handle:
        try:
            text = service_of(request).backend.logs(run.handle, offset)
        except Exception:  # noqa: BLE001 - job folder cleaned up: fall back to the log artifact
            saved = Path(run.output_dir) / "job.log"
            text = saved.read_text(encoding="utf-8", errors="replace")[offset:] if saved.is_file() else ""
    return PlainTextResponse(text, headers={"X-Log-Offset": str(offset + len(text)),
                                            "X-Run-Status": run_out(run).status})
