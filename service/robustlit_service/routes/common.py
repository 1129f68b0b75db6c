"""Helpers shared by the routers: loading rows with 404s, pagination and response conversion."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import func
from sqlmodel import Session, select

from robustlit_service.errors import not_found
from robustlit_service.models import ExperimentRun, Project
from robustlit_service.schemas import RunOut

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="items to skip")]
Filter = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f]*$", description="exact match")]
RUN_ID = re.compile(r"^[0-9a-f]{1,32}$")


def get_project(session: Session, project_id: int) -> Project:
    """The project, or a 404."""
    project = session.get(Project, project_id)
    if project is None:
        raise not_found("project", project_id)
    return project


def get_run(session: Session, run_id: str) -> ExperimentRun:
    """The run, or a 404."""
    run = session.get(ExperimentRun, run_id) if RUN_ID.match(run_id) else None
    if run is None:
        raise not_found("run", repr(run_id))
    return run


def paginate(session: Session, query: Any, limit: int, offset: int) -> tuple[list[Any], int]:
    """One page of ``query`` and the total count."""
    total = session.exec(select(func.count()).select_from(query.order_by(None).subquery())).one()
    return list(session.exec(query.limit(limit).offset(offset)).all()), int(total)


def run_out(run: ExperimentRun) -> RunOut:
    """The API view of a run (``starting`` is shown as ``queued``)."""
    return RunOut(id=run.id, project_id=run.project_id, group_id=run.group_id, name=run.name, kind=run.kind,
                  status="queued" if run.status == "starting" else run.status, recipe=run.recipe,
                  overrides=list(run.overrides or []), seed=run.seed, model_id=run.model_id, error=run.error,
                  created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at)
