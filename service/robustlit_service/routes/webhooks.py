"""Project webhooks, their delivery log, and ``POST /webhooks/test``."""

from __future__ import annotations

import json
import secrets

from fastapi import APIRouter, Request, Response
from sqlalchemy import delete
from sqlmodel import Session, select

from robustlit_service.context import (
    CALLER,
    SESSION,
    Principal,
    audit,
    require_role,
    service_of,
)
from robustlit_service.errors import not_found
from robustlit_service.models import Webhook, WebhookDelivery, utcnow
from robustlit_service.routes.common import Limit, Offset, get_project, paginate
from robustlit_service.schemas import DeliveryOut, Id, Page, WebhookCreated, WebhookIn, WebhookOut, WebhookTest

router = APIRouter(tags=["webhooks"])


def _out(hook: Webhook) -> dict:
    return {"id": hook.id, "project_id": hook.project_id, "url": hook.url, "events": list(hook.events),
            "active": hook.active, "created_at": hook.created_at}


@router.post("/projects/{project_id}/webhooks", response_model=WebhookCreated, status_code=201)
def create_webhook(project_id: Id, body: WebhookIn, principal: Principal = CALLER,
                   session: Session = SESSION) -> WebhookCreated:
    """Add a webhook (project admins). The signing secret is returned only here."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "admin", "projects:write")
    hook = Webhook(project_id=project_id, url=body.url, secret=body.secret or secrets.token_urlsafe(32),
                   events=sorted(set(body.events)))
    session.add(hook)
    session.flush()
    audit(session, principal, "webhook.create", "webhook", hook.id, project_id, url=hook.url, events=hook.events)
    return WebhookCreated(**_out(hook), secret=hook.secret)


@router.get("/projects/{project_id}/webhooks", response_model=Page[WebhookOut])
def list_webhooks(project_id: Id, limit: Limit = 50, offset: Offset = 0, principal: Principal = CALLER,
                  session: Session = SESSION) -> Page[WebhookOut]:
    """The project's webhooks."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "admin", "projects:read")
    rows, total = paginate(session, select(Webhook).where(Webhook.project_id == project_id).order_by(Webhook.id),
                           limit, offset)
    return Page(items=[WebhookOut(**_out(h)) for h in rows], total=total, limit=limit, offset=offset)


def _hook(session: Session, principal: Principal, webhook_id: int, write: bool) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise not_found("webhook", webhook_id)
    require_role(session, principal, hook.project_id, "admin", "projects:write" if write else "projects:read")
    return hook


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: Id, principal: Principal = CALLER,
                   session: Session = SESSION) -> Response:
    """Remove a webhook and its delivery log (project admins)."""
    hook = _hook(session, principal, webhook_id, write=True)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    audit(session, principal, "webhook.delete", "webhook", webhook_id, hook.project_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
def list_deliveries(webhook_id: Id, limit: Limit = 50, offset: Offset = 0,
                    principal: Principal = CALLER,
                    session: Session = SESSION) -> Page[DeliveryOut]:
    """The webhook's delivery log, newest first."""
    hook = _hook(session, principal, webhook_id, write=False)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id).order_by(WebhookDelivery.id.desc())
    rows, total = paginate(session, query, limit, offset)
    return Page(items=[DeliveryOut.model_validate(d, from_attributes=True) for d in rows], total=total, limit=limit,
                offset=offset)


@router.post("/webhooks/test", response_model=DeliveryOut)
def test_webhook(body: WebhookTest, request: Request, principal: Principal = CALLER,
                 session: Session = SESSION) -> DeliveryOut:
    """Send a signed ``ping`` event now and return its delivery record (retried later if it failed)."""
    hook = _hook(session, principal, body.webhook_id, write=True)
    payload = {"event": "ping", "webhook_id": hook.id, "project_id": hook.project_id}
    delivery = WebhookDelivery(webhook_id=hook.id, event="ping", payload=json.dumps(payload), status="pending",
                               next_attempt_at=utcnow())
    session.add(delivery)
    audit(session, principal, "webhook.test", "webhook", hook.id, hook.project_id)
    session.commit()
    from robustlit_service.worker import Dispatcher

    result = Dispatcher(service_of(request)).attempt(delivery.id) or delivery
    return DeliveryOut.model_validate(result, from_attributes=True)
