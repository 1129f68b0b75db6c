"""The FastAPI application: routers under ``/api/v1``, health, readiness, Prometheus metrics, request ids."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func
from sqlmodel import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import robustlit
from robustlit_service.context import Service
from robustlit_service.db import current_revision, head_revision, upgrade
from robustlit_service.errors import install_error_handlers
from robustlit_service.models import UNFINISHED, ExperimentRun
from robustlit_service.observability import configure_logging, log, request_id_var
from robustlit_service.routes import auth, catalog, projects, runs, webhooks
from robustlit_service.schemas import ERRORS
from robustlit_service.settings import Settings

API_PREFIX = "/api/v1"


class ObserveMiddleware:
    """Give each request an id (``X-Request-ID``, kept if the client sent a sane one), count and time it, log it.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a queue per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        request_id_var.set(request_id)  # each request runs in its own task, so this does not leak
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            label = getattr(scope.get("route"), "path", "unmatched")
            method, path = scope["method"], scope["path"]
            service = getattr(scope["app"].state, "service", None) if "app" in scope else None
            if service is not None:
                service.metrics.requests.labels(method, label, str(status)).inc()
                service.metrics.latency.labels(method, label).observe(elapsed)
            log.info("%s %s %s", method, path, status, extra={"method": method, "path": path, "status": status,
                                                             "duration_ms": round(elapsed * 1000, 2)})


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the service for ``settings`` (default: from the environment).

    Args:
        settings: Where the data lives and how the service behaves.
        migrate: Upgrade the database to the newest migration at start-up.

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> with TestClient(create_app()) as client:  # doctest: +SKIP
        ...     client.get("/healthz").json()
        {'status': 'ok'}
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        if migrate:
            upgrade(settings.database_url)
        service = Service(settings)
        app.state.service = service
        dispatcher = None
        if settings.worker:
            from robustlit_service.worker import Dispatcher

            dispatcher = Dispatcher(service)
            dispatcher.start()
        log.info("robustlit service ready (database %s, worker %s)", service.db.writer.url.render_as_string(),
                 settings.worker)
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
            service.db.dispose()

    app = FastAPI(title="robustlit", version=robustlit.__version__, lifespan=lifespan,
                  description="Launch robustness training and evaluation runs and read their reports.")
    install_error_handlers(app)
    for router in (auth.router, projects.router, catalog.router, runs.router, webhooks.router):
        app.include_router(router, prefix=API_PREFIX, responses=ERRORS)

    app.add_middleware(ObserveMiddleware)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready"}})
    def readyz(request: Request) -> JSONResponse:
        """Readiness: the database (and Redis, when configured) answer and the schema is migrated."""
        service: Service = request.app.state.service
        checks: dict[str, str] = {}
        try:
            service.db.ping()
            revision = current_revision(service.settings.database_url)
            checks["database"] = "ok" if revision == head_revision() else f"schema at {revision}, not at head"
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unreachable: {type(error).__name__}"
        if service.redis is not None:
            try:
                service.redis.ping()
                checks["redis"] = "ok"
            except Exception as error:  # noqa: BLE001
                checks["redis"] = f"unreachable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def metrics(request: Request) -> Response:
        """Prometheus metrics: request rate and latency, queue depth, job outcomes, webhook deliveries."""
        service: Service = request.app.state.service
        with service.db.session(write=False) as session:
            counts = dict(session.exec(select(ExperimentRun.status, func.count()).where(
                ExperimentRun.status.in_(UNFINISHED)).group_by(ExperimentRun.status)).all())
        for status in UNFINISHED:
            service.metrics.queue_depth.labels(status=status).set(counts.get(status, 0))
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
