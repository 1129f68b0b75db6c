"""Structured JSON logs with request and run ids, and the Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
run_id_var: ContextVar[str | None] = ContextVar("run_id", default=None)

log = logging.getLogger("robustlit_service")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, run_id and extras.

    Example:
        >>> record = logging.LogRecord("x", logging.INFO, "f", 1, "hello %s", ("you",), None)
        >>> json.loads(JsonFormatter().format(record))["message"]
        'hello you'
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
            "run_id": getattr(record, "run_id", None) or run_id_var.get(),
        }
        for key in ("method", "path", "status", "duration_ms", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send the service's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("robustlit_service", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs each request with its ids


class Metrics:
    """The service's Prometheus instruments, on a registry of their own.

    Example:
        >>> m = Metrics()
        >>> m.jobs.labels(outcome="succeeded").inc()
        >>> m.registry.get_sample_value("robustlit_jobs_total", {"outcome": "succeeded"})
        1.0
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("robustlit_http_requests", "HTTP requests served", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "robustlit_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry,
        )
        self.queue_depth = Gauge("robustlit_queue_depth", "Runs waiting or running, by status", ["status"],
                                 registry=self.registry)
        self.jobs = Counter("robustlit_jobs", "Finished jobs by outcome", ["outcome"], registry=self.registry)
        self.webhooks = Counter("robustlit_webhook_deliveries", "Webhook delivery attempts by result", ["result"],
                                registry=self.registry)
        self.rate_limited = Counter("robustlit_rate_limited", "Requests refused by the rate limit",
                                    registry=self.registry)
