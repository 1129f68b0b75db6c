"""The ``robustness_report.json`` contract (schema version 1), with validation.

The service, the dashboard and the exports read runs only through this schema, so this module
imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

from robustlit.errors import RobustlitError

SCHEMA_VERSION = 1
RUN_TYPES = ("train", "evaluate")


class ReportError(RobustlitError, ValueError):
    """A report file or dict does not follow the schema; the message names the field."""


@dataclass
class Metric:
    """One measured value: ``suite/name`` under a ``context`` (attack, ε, corruption …).

    Example:
        >>> Metric("adversarial", "robust_accuracy", 0.39, {"attack": "pgd", "norm": "Linf", "eps": 0.0314}).key
        'adversarial/robust_accuracy'
    """

    suite: str
    name: str
    value: float
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``suite/name``."""
        return f"{self.suite}/{self.name}"


@dataclass
class Artifact:
    """A file produced by the run (plot, table, checkpoint)."""

    name: str
    type: str
    uri: str


@dataclass
class Finding:
    """A diagnostic raised during evaluation, e.g. a sign of gradient masking.

    Example:
        >>> Finding("adversarial", "zero_gradients", "12% of inputs have zero gradients").check
        'zero_gradients'
    """

    suite: str
    check: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunInfo:
    """Who, what and when of a run.

    ``packages`` maps the main dependencies to their installed versions (reproducibility); ``mlflow_run_id``
    links the run to its MLflow record when ``logger=mlflow`` tracked it. Both are optional.
    """

    id: str
    name: str
    type: str
    seed: int | None
    started_at: str
    finished_at: str
    config: dict[str, Any]
    git_sha: str | None
    robustlit_version: str
    packages: dict[str, str] | None = None
    mlflow_run_id: str | None = None


@dataclass
class ModelInfo:
    """The evaluated model."""

    name: str
    params: int
    checkpoint: str | None = None


@dataclass
class DataInfo:
    """The evaluation data."""

    name: str
    n_test: int
    fingerprint: str


@dataclass
class Report:
    """A whole ``robustness_report.json``.

    Example:
        >>> run = RunInfo("r1", "demo", "evaluate", 0, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z",
        ...               {}, None, "0.1.0")
        >>> report = Report(run, ModelInfo("smallcnn", 10), DataInfo("digits", 360, "ab"),
        ...                 [Metric("clean", "accuracy", 0.9)])
        >>> Report.from_dict(report.to_dict()) == report
        True
    """

    run: RunInfo
    model: ModelInfo
    data: DataInfo
    metrics: list[Metric]
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, ``schema_version`` first."""
        data = asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    def find(self, suite: str, name: str, **context: Any) -> list[Metric]:
        """Metrics of ``suite/name`` whose context contains every given item."""
        return [
            m for m in self.metrics
            if m.suite == suite and m.name == name and all(m.context.get(k) == v for k, v in context.items())
        ]

    @classmethod
    def from_dict(cls, data: Any) -> Report:
        """Validate and build a report; raises :class:`ReportError` naming the first bad field."""
        if not isinstance(data, dict):
            raise ReportError(f"a report must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ReportError(f"unsupported schema_version {version!r}; this robustlit reads version {SCHEMA_VERSION}")
        run = _build(RunInfo, data, "run")
        if run.type not in RUN_TYPES:
            raise ReportError(f"run.type must be one of {', '.join(RUN_TYPES)}, got {run.type!r}")
        metrics = [_build(Metric, item, f"metrics[{i}]") for i, item in enumerate(_list(data, "metrics"))]
        for i, metric in enumerate(metrics):
            if not isinstance(metric.value, int | float) or isinstance(metric.value, bool) or math.isnan(metric.value):
                raise ReportError(f"metrics[{i}].value must be a number, got {metric.value!r}")
            if not isinstance(metric.context, dict):
                raise ReportError(f"metrics[{i}].context must be an object")
        timings = data.get("timings", {})
        if not isinstance(timings, dict) or not all(isinstance(v, int | float) for v in timings.values()):
            raise ReportError("timings must map names to seconds")
        artifacts = [_build(Artifact, item, f"artifacts[{i}]") for i, item in enumerate(data.get("artifacts", []))]
        warnings = [_build(Finding, item, f"warnings[{i}]") for i, item in enumerate(data.get("warnings", []))]
        return cls(
            run=run, model=_build(ModelInfo, data, "model"), data=_build(DataInfo, data, "data"),
            metrics=metrics, timings=dict(timings), artifacts=artifacts, warnings=warnings,
        )


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ReportError(f"{key} must be a list")
    return value


def _build(kind: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``kind`` from ``data[where]`` (or ``data`` for list items)."""
    item = data if where.endswith("]") else data.get(where)
    if not isinstance(item, dict):
        raise ReportError(f"{where} must be an object")
    fields = kind.__dataclass_fields__
    required = [name for name, f in fields.items() if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in item]
    if missing:
        raise ReportError(f"{where} is missing {', '.join(missing)}")
    return kind(**{name: item[name] for name in fields if name in item})
