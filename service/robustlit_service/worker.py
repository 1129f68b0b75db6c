"""Background threads of an API process: the job dispatcher and the webhook deliverer."""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from robustlit_launcher import Job, JobNotFoundError, JobStatus
from sqlalchemy import func, or_, update
from sqlmodel import select

from robustlit_service.context import Service, audit
from robustlit_service.jobs import build_command, collect_outputs, failure_message, finish, read_log
from robustlit_service.models import ExperimentRun, Recipe, RegisteredModel, Webhook, WebhookDelivery, utcnow
from robustlit_service.observability import log, run_id_var

ORPHAN_AFTER = timedelta(seconds=60)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Robustlit-Signature`` value: ``sha256=`` HMAC of ``"<timestamp>.<body>"`` under the secret.

    Example:
        >>> sign("s3cret", "1700000000", b'{"event":"ping"}')[:7]
        'sha256='
    """
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff_delay(attempt: int, base: float, cap: float = 3600.0, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped, times a jitter in [0.5, 1.5).

    Example:
        >>> 2.0 <= backoff_delay(2, 2.0) < 6.0
        True
    """
    jitter = (rng or random).uniform(0.5, 1.5)
    return min(cap, base * 2 ** (attempt - 1)) * jitter


class Dispatcher:
    """Launch queued runs through the launcher, follow them to the end and ingest their reports.

    Every step is a compare-and-set on the run's status, so several API replicas can run dispatchers on one
    database: a run is launched once and finished once.

    Example:
        >>> dispatcher = Dispatcher(Service(Settings.from_env()))  # doctest: +SKIP
        >>> dispatcher.start()  # doctest: +SKIP
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the job and webhook threads."""
        for target, name in ((self._jobs_loop, "robustlit-dispatcher"), (self._webhooks_loop, "robustlit-webhooks")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads (running jobs keep running; a restarted service picks them up)."""
        self._stop.set()
        self.service.wake.notify("")
        for thread in self._threads:
            thread.join(timeout=15)

    def _jobs_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("dispatcher step failed")
                time.sleep(1.0)
            try:
                self.service.wake.wait(self.service.settings.poll_interval)
            except Exception:  # noqa: BLE001 - Redis briefly unreachable: fall back to polling
                time.sleep(self.service.settings.poll_interval)

    def _webhooks_loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.deliver_due()
            except Exception:  # noqa: BLE001
                log.exception("webhook step failed")
                busy = False
            if not busy:
                self._stop.wait(min(0.5, self.service.settings.poll_interval))

    def step(self) -> None:
        """One pass: mark orphans, finish ended jobs, launch queued runs."""
        self.recover_orphans()
        self.poll_running()
        self.launch_queued()

    def recover_orphans(self) -> None:
        """Fail runs whose launch was interrupted (claimed but never started) by a killed process."""
        cutoff = utcnow() - ORPHAN_AFTER
        with self.service.db.session() as session:
            stale = session.exec(select(ExperimentRun).where(ExperimentRun.status == "starting",
                                                             ExperimentRun.claimed_at < cutoff)).all()
            for run in stale:
                result = session.execute(
                    update(ExperimentRun).where(ExperimentRun.id == run.id, ExperimentRun.status == "starting")
                    .values(status="failed", finished_at=utcnow(),
                            error="orphaned: the service stopped while launching this run; submit it again")
                )
                if result.rowcount == 1:
                    audit(session, None, "run.orphaned", "run", run.id, run.project_id)
                    self.service.metrics.jobs.labels(outcome="orphaned").inc()
                    log.warning("run orphaned while launching", extra={"run_id": run.id})

    def poll_running(self) -> None:
        """Finish every running run whose job has ended."""
        with self.service.db.session(write=False) as session:
            running = session.exec(select(ExperimentRun).where(ExperimentRun.status == "running")).all()
        for run in running:
            try:
                status = self.service.backend.status(run.handle or "")
            except JobNotFoundError:
                self._finish(run, "failed", "orphaned: the launcher has no record of this run's job")
                continue
            if status.finished:
                self._finish_job(run, status)

    def _finish_job(self, run: ExperimentRun, status: JobStatus) -> None:
        token = run_id_var.set(run.id)
        try:
            log_text = read_log(self.service.backend, run.handle)
            if status is JobStatus.CANCELED:
                self._finish(run, "canceled", "canceled", log_text=log_text)
                return
            metrics, artifacts, problem = collect_outputs(run, log_text)
            if status is JobStatus.SUCCEEDED and problem is None:
                self._finish(run, "succeeded", None, metrics, artifacts)
            else:
                exit_code = getattr(self.service.backend, "exit_code", lambda _h: None)(run.handle)
                error = problem if status is JobStatus.SUCCEEDED else failure_message(exit_code, log_text)
                self._finish(run, "failed", error, metrics, artifacts)
        finally:
            run_id_var.reset(token)

    def _finish(self, run: ExperimentRun, status: str, error: str | None, metrics: list | None = None,
                artifacts: list[tuple[str, str, str]] | None = None, log_text: str | None = None) -> None:
        if artifacts is None:
            _, artifacts, _ = collect_outputs(run, log_text or "") if log_text is not None else ([], [], None)
        run_dir = Path(run.output_dir)
        local = [name for name, _, uri in artifacts if not uri]
        published = self.service.store.publish(run.id, run_dir, local) if local else {}
        rows = []
        for name, kind, uri in artifacts:
            path = run_dir / name
            size = path.stat().st_size if not uri and path.is_file() else None
            rows.append((name, kind, published.get(name, uri), size))
        with self.service.db.session() as session:
            if finish(session, run, status, error, metrics or [], rows):
                audit(session, None, f"run.{status}", "run", run.id, run.project_id, error=error)
                self.service.metrics.jobs.labels(outcome=status).inc()
                log.info("run %s", status, extra={"run_id": run.id})

    def launch_queued(self) -> None:
        """Launch queued runs, oldest first, while fewer than ``max_running`` jobs run."""
        settings = self.service.settings
        with self.service.db.session(write=False) as session:
            active = session.exec(select(func.count()).select_from(ExperimentRun).where(
                ExperimentRun.status.in_(("starting", "running")))).one()
            capacity = settings.max_running - active
            if capacity <= 0:
                return
            queued = session.exec(select(ExperimentRun).where(ExperimentRun.status == "queued")
                                  .order_by(ExperimentRun.created_at).limit(capacity)).all()
        for run in queued:
            self._launch(run)

    def _launch(self, run: ExperimentRun) -> None:
        service = self.service
        with service.db.session() as session:
            claimed = session.execute(
                update(ExperimentRun).where(ExperimentRun.id == run.id, ExperimentRun.status == "queued")
                .values(status="starting", claimed_at=utcnow())
            ).rowcount == 1
            if not claimed:
                return
            recipe_overrides, checkpoint = self._resolve(session, run)
        token = run_id_var.set(run.id)
        try:
            Path(run.output_dir).mkdir(parents=True, exist_ok=True)
            command = build_command(service.settings, run, recipe_overrides, checkpoint)
            handle = service.backend.submit(Job(command=command, workdir=run.output_dir,
                                                env={"ROBUSTLIT_RUN_ID": run.id}, name=f"robustlit-{run.id}"))
        except Exception as error:  # noqa: BLE001 - any launch failure fails the run with its reason
            with service.db.session() as session:
                session.execute(update(ExperimentRun).where(ExperimentRun.id == run.id,
                                                            ExperimentRun.status == "starting")
                                .values(status="failed", finished_at=utcnow(), error=f"launch failed: {error}"))
                audit(session, None, "run.launch_failed", "run", run.id, run.project_id, error=str(error))
            service.metrics.jobs.labels(outcome="failed").inc()
            log.error("launch failed: %s", error)
            return
        finally:
            run_id_var.reset(token)
        with service.db.session() as session:
            started = session.execute(
                update(ExperimentRun).where(ExperimentRun.id == run.id, ExperimentRun.status == "starting")
                .values(status="running", handle=handle, started_at=utcnow(), command=command)
            ).rowcount == 1
            if started:
                audit(session, None, "run.started", "run", run.id, run.project_id, handle=handle)
            else:
                session.execute(update(ExperimentRun).where(ExperimentRun.id == run.id)
                                .values(handle=handle, command=command))
        if not started:  # canceled while it was being launched
            service.backend.cancel(handle)
        log.info("run started as job %s", handle, extra={"run_id": run.id})

    @staticmethod
    def _resolve(session: Any, run: ExperimentRun) -> tuple[list[str], str | None]:
        """The overrides of the run's recipe, and the checkpoint of its model."""
        overrides: list[str] = []
        if run.recipe:
            name, _, version = run.recipe.partition(":")
            query = select(Recipe).where(Recipe.project_id == run.project_id, Recipe.name == name)
            query = query.where(Recipe.version == int(version)) if version else query.order_by(Recipe.version.desc())
            stored = session.exec(query).first()
            if stored is not None:
                overrides = ([f"recipe={stored.base}"] if stored.base else []) + list(stored.overrides)
            else:
                overrides = [f"recipe={name}"]
        checkpoint = None
        if run.model_id is not None:
            model = session.get(RegisteredModel, run.model_id)
            checkpoint = model.uri if model is not None else None
        return overrides, checkpoint

    def deliver_due(self) -> bool:
        """Attempt every webhook delivery that is due; whether any was attempted."""
        now = utcnow()
        with self.service.db.session(write=False) as session:
            due = session.exec(select(WebhookDelivery).where(
                WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            ).order_by(WebhookDelivery.next_attempt_at).limit(20)).all()
        for delivery in due:
            self.attempt(delivery.id)
        return bool(due)

    def attempt(self, delivery_id: int) -> WebhookDelivery | None:
        """Claim and send one delivery; on failure schedule the next try with backoff and jitter."""
        settings = self.service.settings
        now = utcnow()
        with self.service.db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != "pending":
                return delivery
            claimed = session.execute(
                update(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == delivery.attempts,
                    or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now))
                .values(claimed_until=now + timedelta(seconds=30))
            ).rowcount == 1
            hook = session.get(Webhook, delivery.webhook_id)
        if not claimed or hook is None:
            return delivery
        body = delivery.payload.encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Robustlit-Event": delivery.event,
                   "X-Robustlit-Delivery": str(delivery.id), "X-Robustlit-Timestamp": timestamp,
                   "X-Robustlit-Signature": sign(hook.secret, timestamp, body), "User-Agent": "robustlit-webhooks"}
        code, error = None, None
        try:
            response = httpx.post(hook.url, content=body, headers=headers, timeout=5.0)
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status_code": code, "last_error": error,
                                  "claimed_until": None}
        if error is None:
            values.update(status="succeeded", delivered_at=utcnow())
        elif attempts >= settings.webhook_max_attempts:
            values.update(status="failed")
        else:
            delay = backoff_delay(attempts, settings.webhook_backoff)
            values.update(next_attempt_at=utcnow() + timedelta(seconds=delay))
        self.service.metrics.webhooks.labels(result="delivered" if error is None else "failed").inc()
        with self.service.db.session() as session:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))
            return session.get(WebhookDelivery, delivery_id)
