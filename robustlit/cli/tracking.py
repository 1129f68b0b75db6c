"""MLflow tracking of a run: Lightning's MLFlowLogger, plus the report, its plots, checkpoints and provenance."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from robustlit.reporting import Report

ARTIFACT_FOLDERS = {"plot": "plots", "checkpoint": "checkpoints", "table": "tables"}
_UNSAFE = re.compile(r"[^\w.\- /:]")


class ReportMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` that defaults to a local SQLite store and uploads the finished run's report.

    Training metrics and the model's hyperparameters go to MLflow as Lightning logs them. When the run is
    over, :meth:`log_report` adds the report's metrics, ``robustness_report.json``, the resolved config,
    plots, checkpoints and the provenance tags (seed, git SHA, package versions, data fingerprint).

    Args:
        experiment_name: MLflow experiment of the run (created when missing).
        run_name: Display name of the run.
        tracking_uri: Any MLflow tracking URI (``http://…``, ``postgresql://…``, ``sqlite:///…``); ``None``
            uses ``$MLFLOW_TRACKING_URI`` or, without it, ``sqlite:///<store_dir>/mlflow.db``, which needs no server.
        store_dir: Folder of the default local store: the SQLite file and the artifacts of new experiments.
        artifact_location: Artifact root of a newly created experiment; ``None`` lets the store decide
            (``<store_dir>/artifacts`` for the default local store).
        log_checkpoints: Upload the run's checkpoints (they can be large).
        **kwargs: Passed to :class:`~lightning.pytorch.loggers.MLFlowLogger` (``tags``, ``prefix``, ``run_id`` …).

    Example:
        >>> logger = ReportMLFlowLogger(store_dir=str(getfixture("tmp_path")))
        >>> logger._tracking_uri.startswith("sqlite:///") and logger._tracking_uri.endswith("/mlflow.db")
        True
    """

    def __init__(
        self,
        experiment_name: str = "robustlit",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        store_dir: str = "runs/mlflow",
        artifact_location: str | None = None,
        log_checkpoints: bool = True,
        **kwargs: Any,
    ) -> None:
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            store = Path(store_dir).resolve()
            store.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
            artifact_location = artifact_location or (store / "artifacts").as_uri()
        super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri,
                         artifact_location=artifact_location, **kwargs)
        self.log_checkpoints = log_checkpoints

    @rank_zero_only
    def log_report(self, report: Report, report_path: Path) -> None:
        """Upload the finished run: report metrics, report file, config, artifacts and provenance.

        Args:
            report: The run's report; its artifacts with a local ``uri`` are uploaded by type
                (``plots/``, ``checkpoints/``, ``tables/``).
            report_path: The written ``robustness_report.json``.
        """
        from mlflow.entities import Metric as MlflowMetric

        client, run_id = self.experiment, self.run_id
        now = int(time.time() * 1000)
        # through the client, not log_metrics: Lightning would strip the ':' of the context items
        metrics = {metric_key(m.suite, m.name, m.context): float(m.value) for m in report.metrics}
        client.log_batch(run_id, metrics=[MlflowMetric(key, value, now, 0) for key, value in metrics.items()])
        self.log_hyperparams({"config": report.run.config})
        tags = provenance_tags(report)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_artifact(run_id, str(report_path))
        client.log_dict(run_id, report.run.config, "config.yaml")
        for artifact in report.artifacts:
            path = Path(artifact.uri)
            if artifact.type == "checkpoint" and not self.log_checkpoints or not path.is_file():
                continue
            client.log_artifact(run_id, str(path), ARTIFACT_FOLDERS.get(artifact.type, artifact.type))


def metric_key(suite: str, name: str, context: dict[str, Any]) -> str:
    """MLflow metric name of a report metric: ``suite/name`` then ``key:value`` per context item.

    Example:
        >>> metric_key("adversarial", "robust_accuracy", {"attack": "pgd", "norm": "Linf", "eps": 0.0313725})
        'adversarial/robust_accuracy/attack:pgd/norm:Linf/eps:0.0313725'
    """
    parts = [suite, name, *(f"{key}:{value}" for key, value in context.items())]
    return _UNSAFE.sub("_", "/".join(parts))


def provenance_tags(report: Report) -> dict[str, str]:
    """MLflow tags that make a run reproducible: seed, git commit, data fingerprint, robustlit and package versions.

    Example:
        >>> from robustlit.reporting import DataInfo, ModelInfo, RunInfo
        >>> run = RunInfo("r", "demo", "train", 3, "t0", "t1", {}, "abc", "0.1.0", packages={"torch": "2.4.0"})
        >>> tags = provenance_tags(Report(run, ModelInfo("m", 1), DataInfo("digits", 9, "ff"), []))
        >>> tags["mlflow.source.git.commit"], tags["robustlit.seed"], tags["package.torch"]
        ('abc', '3', '2.4.0')
    """
    tags = {
        "robustlit.run_id": report.run.id, "robustlit.type": report.run.type, "robustlit.seed": str(report.run.seed),
        "robustlit.version": report.run.robustlit_version, "robustlit.data": report.data.name,
        "robustlit.data_fingerprint": report.data.fingerprint, "robustlit.model": report.model.name,
    }
    if report.run.git_sha:
        tags["mlflow.source.git.commit"] = report.run.git_sha
    tags.update({f"package.{name}": version for name, version in (report.run.packages or {}).items()})
    return tags


def mlflow_run_id(loggers: Iterable[Logger]) -> str | None:
    """The MLflow run id of the first MLflow logger among ``loggers`` (``None`` without one, or off rank 0).

    Example:
        >>> mlflow_run_id([]) is None
        True
    """
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            return logger.run_id
    return None


def log_report(loggers: Iterable[Logger], report: Report, report_path: Path) -> None:
    """Hand the finished report to every logger that records reports (:class:`ReportMLFlowLogger`)."""
    for logger in loggers:
        if isinstance(logger, ReportMLFlowLogger):
            logger.log_report(report, report_path)
