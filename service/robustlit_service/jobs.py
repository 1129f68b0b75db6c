"""Turn runs into launcher jobs, and finished jobs back into metrics, artifacts and webhook events."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from robustlit.reporting import REPORT_FILENAME, ReportError, read_report
from robustlit_service.models import ArtifactRow, ExperimentRun, MetricRow, Webhook, WebhookDelivery, utcnow
from robustlit_service.observability import log
from robustlit_service.settings import Settings

LOG_ARTIFACT = "job.log"
_PLAIN = re.compile(r"^[\w./\-]+$")


def hydra_value(value: str) -> str:
    """Quote a value for a Hydra override when it holds characters Hydra's grammar would parse.

    Example:
        >>> hydra_value("/data/runs/abc"), hydra_value("/my runs/abc")
        ('/data/runs/abc', "'/my runs/abc'")
    """
    if _PLAIN.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_command(settings: Settings, run: ExperimentRun, recipe_overrides: list[str],
                  checkpoint: str | None = None) -> list[str]:
    """The argv of a run's job: program, recipe, overrides, seed, then the run's own output folder.

    Example:
        >>> from pathlib import Path
        >>> settings = Settings(home=Path("/srv"), database_url="sqlite://")
        >>> run = ExperimentRun(id="ab", project_id=1, group_id="ab", name="n", kind="train", status="queued",
        ...                     overrides=["trainer=debug"], seed=3, command=[], output_dir="/srv/runs/ab")
        >>> build_command(settings, run, ["recipe=mixup"])
        ['robustlit-train', 'recipe=mixup', 'trainer=debug', 'seed=3', 'hydra.run.dir=/srv/runs/ab']
    """
    program = settings.train_command if run.kind == "train" else settings.eval_command
    command = [*program, *recipe_overrides]
    if checkpoint is not None:
        command.append(f"model.checkpoint={hydra_value(checkpoint)}")
    command.extend(run.overrides)
    if run.seed is not None:
        command.append(f"seed={run.seed}")
    command.append(f"hydra.run.dir={hydra_value(run.output_dir)}")
    return command


def failure_message(exit_code: int | None, log_text: str) -> str:
    r"""The error shown for a failed job: its exit status and the end of its log.

    Example:
        >>> failure_message(2, "loading\nrobustlit-train: error: unknown data option 'x'\n")
        "exit code 2: robustlit-train: error: unknown data option 'x'"
    """
    lines = [line for line in log_text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    tail = (errors[-1] if errors else (lines[-1] if lines else "no output")).strip()
    status = "the job was killed" if exit_code is None else f"exit code {exit_code}"
    return f"{status}: {tail}"[:3900]


def collect_outputs(run: ExperimentRun, log_text: str
                    ) -> tuple[list[MetricRow], list[tuple[str, str, str]], str | None]:
    """Read the run's report: its metric rows, its artifacts as ``(name, type, uri)`` and an error if unreadable.

    Artifacts inside the run folder get names relative to it (and become downloadable); artifacts elsewhere keep
    their URI. The job's log is written to the run folder as ``job.log``.
    """
    run_dir = Path(run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOG_ARTIFACT).write_text(log_text, encoding="utf-8")
    artifacts: list[tuple[str, str, str]] = [(LOG_ARTIFACT, "log", "")]
    if not (run_dir / REPORT_FILENAME).is_file():
        return [], artifacts, f"the job wrote no {REPORT_FILENAME} in its output folder"
    try:
        report = read_report(run_dir)
    except ReportError as error:
        return [], artifacts, f"invalid report: {error}"
    metrics = [MetricRow(run_id=run.id, suite=m.suite, name=m.name, value=float(m.value),
                         context=json.loads(json.dumps(m.context, default=str))) for m in report.metrics]
    artifacts.append((REPORT_FILENAME, "report", ""))
    seen = {name for name, _, _ in artifacts}
    root = run_dir.resolve()
    for artifact in report.artifacts:
        path = Path(artifact.uri)
        path = path if path.is_absolute() else run_dir / path
        resolved = path.resolve()
        if root in resolved.parents and resolved.is_file():
            name = resolved.relative_to(root).as_posix()
            uri = ""
        else:
            name, uri = artifact.name, artifact.uri
        if name not in seen:
            seen.add(name)
            artifacts.append((name, artifact.type, uri))
    return metrics, artifacts, None


def finish(session: Session, run: ExperimentRun, status: str, error: str | None, metrics: list[MetricRow],
           artifacts: list[tuple[str, str, str, int | None]]) -> bool:
    """Move ``run`` from running to its final ``status`` with its outputs, in one transaction.

    Returns ``False`` (and writes nothing) when another process finished or canceled it first.
    """
    now = utcnow()
    result = session.execute(
        update(ExperimentRun).where(ExperimentRun.id == run.id, ExperimentRun.status == "running")
        .values(status=status, error=error, finished_at=now)
    )
    if result.rowcount != 1:
        return False
    session.add_all(metrics)
    for name, kind, uri, size in artifacts:
        session.add(ArtifactRow(run_id=run.id, name=name, type=kind, uri=uri, size=size))
    run.status, run.error, run.finished_at = status, error, now
    event = {"succeeded": "run_completed", "failed": "run_failed"}.get(status)
    if event is not None:
        enqueue_event(session, run, event)
    return True


def enqueue_event(session: Session, run: ExperimentRun, event: str) -> None:
    """Queue one delivery of ``event`` for each active webhook of the run's project that wants it."""
    from robustlit_service.routes.common import run_out

    hooks = session.exec(select(Webhook).where(Webhook.project_id == run.project_id, Webhook.active)).all()
    payload = {"event": event, "run": json.loads(run_out(run).model_dump_json())}
    for hook in hooks:
        if event in hook.events:
            session.add(WebhookDelivery(webhook_id=hook.id, event=event, payload=json.dumps(payload),
                                        status="pending", next_attempt_at=utcnow()))
            log.info("queued %s for webhook %s", event, hook.id, extra={"run_id": run.id, "event": event})


def read_log(backend: Any, handle: str | None) -> str:
    """The job's whole log, or ``""`` when the launcher no longer knows the job."""
    if not handle:
        return ""
    try:
        return backend.logs(handle)
    except Exception:  # noqa: BLE001 - a vanished job folder leaves an empty log, not a crash
        return ""
