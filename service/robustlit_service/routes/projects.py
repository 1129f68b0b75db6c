"""Projects, their members (RBAC roles) and their audit log."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import delete
from sqlmodel import Session, select

from robustlit_service.context import (
    CALLER,
    SESSION,
    Principal,
    audit,
    require_role,
    require_scope,
)
from robustlit_service.errors import ApiError, not_found
from robustlit_service.models import UNFINISHED, AuditLog, ExperimentRun, Membership, Project, User
from robustlit_service.routes.common import Filter, Limit, Offset, get_project, paginate
from robustlit_service.schemas import AuditOut, Id, MemberIn, MemberOut, Page, ProjectCreate, ProjectOut, ProjectUpdate

router = APIRouter(tags=["projects"])


def _out(project: Project, role: str) -> ProjectOut:
    return ProjectOut(id=project.id, name=project.name, description=project.description,
                      created_at=project.created_at, role=role)


@router.post("/projects", response_model=ProjectOut, status_code=201)
def create_project(body: ProjectCreate, principal: Principal = CALLER,
                   session: Session = SESSION) -> ProjectOut:
    """Create a project; the caller becomes its admin."""
    require_scope(principal, "projects:write")
    if session.exec(select(Project).where(Project.name == body.name)).first() is not None:
        raise ApiError(409, "conflict", f"a project named {body.name!r} already exists")
    project = Project(name=body.name, description=body.description, created_by=principal.user.id)
    session.add(project)
    session.flush()
    session.add(Membership(project_id=project.id, user_id=principal.user.id, role="admin"))
    audit(session, principal, "project.create", "project", project.id, project.id, name=project.name)
    return _out(project, "admin")


@router.get("/projects", response_model=Page[ProjectOut])
def list_projects(limit: Limit = 50, offset: Offset = 0, name: Filter = None,
                  principal: Principal = CALLER,
                  session: Session = SESSION) -> Page[ProjectOut]:
    """Projects the caller can see (admins: all), optionally filtered by exact name."""
    require_scope(principal, "projects:read")
    if principal.is_admin:
        query = select(Project, Membership.role).outerjoin(
            Membership, (Membership.project_id == Project.id) & (Membership.user_id == principal.user.id))
    else:
        query = select(Project, Membership.role).join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == principal.user.id)
    if name is not None:
        query = query.where(Project.name == name)
    rows, total = paginate(session, query.order_by(Project.id), limit, offset)
    return Page(items=[_out(p, role or "admin") for p, role in rows], total=total, limit=limit, offset=offset)


@router.get("/projects/{project_id}", response_model=ProjectOut)
def read_project(project_id: Id, principal: Principal = CALLER,
                 session: Session = SESSION) -> ProjectOut:
    """One project."""
    project = get_project(session, project_id)
    role = require_role(session, principal, project_id, "viewer", "projects:read")
    return _out(project, role)


@router.patch("/projects/{project_id}", response_model=ProjectOut)
def update_project(project_id: Id, body: ProjectUpdate, principal: Principal = CALLER,
                   session: Session = SESSION) -> ProjectOut:
    """Rename or describe a project (project admins)."""
    project = get_project(session, project_id)
    role = require_role(session, principal, project_id, "admin", "projects:write")
    changes = body.model_dump(exclude_none=True)
    if "name" in changes and changes["name"] != project.name and session.exec(
            select(Project).where(Project.name == changes["name"])).first() is not None:
        raise ApiError(409, "conflict", f"a project named {changes['name']!r} already exists")
    for key, value in changes.items():
        setattr(project, key, value)
    session.add(project)
    audit(session, principal, "project.update", "project", project.id, project.id, **changes)
    return _out(project, role)


@router.delete("/projects/{project_id}", status_code=204)
def delete_project(project_id: Id, principal: Principal = CALLER,
                   session: Session = SESSION) -> Response:
    """Delete an empty project (project admins); a project with runs must keep its history."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "admin", "projects:write")
    if session.exec(select(ExperimentRun.id).where(ExperimentRun.project_id == project_id)).first() is not None:
        raise ApiError(409, "conflict", f"project {project_id} has runs; it cannot be deleted")
    from robustlit_service.models import Dataset, Recipe, RegisteredModel, Webhook, WebhookDelivery

    hooks = select(Webhook.id).where(Webhook.project_id == project_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id.in_(hooks)))
    for table in (Webhook, Dataset, Recipe, RegisteredModel, Membership):
        session.execute(delete(table).where(table.project_id == project_id))
    session.execute(delete(Project).where(Project.id == project_id))
    audit(session, principal, "project.delete", "project", project_id, project_id)
    return Response(status_code=204)


@router.get("/projects/{project_id}/members", response_model=Page[MemberOut])
def list_members(project_id: Id, limit: Limit = 50, offset: Offset = 0,
                 principal: Principal = CALLER,
                 session: Session = SESSION) -> Page[MemberOut]:
    """The project's members and roles."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    query = (select(Membership, User).join(User, User.id == Membership.user_id)
             .where(Membership.project_id == project_id).order_by(Membership.id))
    rows, total = paginate(session, query, limit, offset)
    return Page(items=[MemberOut(user_id=u.id, email=u.email, role=m.role) for m, u in rows], total=total,
                limit=limit, offset=offset)


@router.put("/projects/{project_id}/members", response_model=MemberOut)
def set_member(project_id: Id, body: MemberIn, principal: Principal = CALLER,
               session: Session = SESSION) -> MemberOut:
    """Give a user a role in the project, or change it (project admins)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "admin", "projects:write")
    user = session.exec(select(User).where(User.email == body.email)).first()
    if user is None:
        raise not_found("user", repr(body.email))
    membership = session.exec(select(Membership).where(Membership.project_id == project_id,
                                                       Membership.user_id == user.id)).first()
    if membership is None:
        membership = Membership(project_id=project_id, user_id=user.id, role=body.role)
    else:
        membership.role = body.role
    session.add(membership)
    audit(session, principal, "member.set", "user", user.id, project_id, role=body.role)
    return MemberOut(user_id=user.id, email=user.email, role=body.role)


@router.delete("/projects/{project_id}/members/{user_id}", status_code=204)
def remove_member(project_id: Id, user_id: Id, principal: Principal = CALLER,
                  session: Session = SESSION) -> Response:
    """Remove a user from the project (project admins)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "admin", "projects:write")
    removed = session.execute(delete(Membership).where(Membership.project_id == project_id,
                                                       Membership.user_id == user_id)).rowcount
    if not removed:
        raise not_found("member", user_id)
    audit(session, principal, "member.remove", "user", user_id, project_id)
    return Response(status_code=204)


@router.get("/projects/{project_id}/audit", response_model=Page[AuditOut])
def project_audit(project_id: Id, limit: Limit = 50, offset: Offset = 0, action: Filter = None,
                  principal: Principal = CALLER,
                  session: Session = SESSION) -> Page[AuditOut]:
    """The project's audit log, newest first (project admins)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "admin", "projects:read")
    query = select(AuditLog).where(AuditLog.project_id == project_id)
    if action is not None:
        query = query.where(AuditLog.action == action)
    rows, total = paginate(session, query.order_by(AuditLog.id.desc()), limit, offset)
    return Page(items=[AuditOut.model_validate(r, from_attributes=True) for r in rows], total=total, limit=limit,
                offset=offset)


def queue_length(session: Session, project_id: int) -> int:
    """How many of the project's runs are unfinished."""
    from sqlalchemy import func

    return int(session.exec(select(func.count()).select_from(ExperimentRun).where(
        ExperimentRun.project_id == project_id, ExperimentRun.status.in_(UNFINISHED))).one())
