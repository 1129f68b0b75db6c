"""Assemble ``robustness_report.json`` from a finished run."""

from __future__ import annotations

import platform
import subprocess
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

import robustlit
from robustlit.cli.tracking import log_report
from robustlit.models import describe_model
from robustlit.reporting import Artifact, DataInfo, Finding, ModelInfo, Report, RunInfo, print_report, write_report
from robustlit.reporting.plots import plot_report
from robustlit.suites import EvaluationSuite


def utc_now() -> str:
    """Current UTC time in ISO 8601 with a ``Z`` suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_sha(cwd: Path | None = None) -> str | None:
    """The commit checked out in ``cwd`` (the current directory by default), or ``None``."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


TRACKED_PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "timm", "torchmetrics", "numpy",
                    "scikit-learn", "mlflow-skinny")


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones are left out), plus the Python version.

    Example:
        >>> package_versions(["numpy"])["python"] == platform.python_version()
        True
    """
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_report(
    cfg: DictConfig,
    *,
    run_type: str,
    started_at: str,
    model: nn.Module,
    model_name: str | None,
    checkpoint: str | None,
    datamodule: Any,
    suites: list[EvaluationSuite],
    timings: dict[str, float],
    artifacts: list[Artifact],
    mlflow_run_id: str | None = None,
    write_files: bool = True,
) -> Report:
    """Collect run, model, data, metrics, timings and artifacts into a :class:`Report`.

    Each suite's :meth:`~robustlit.suites.EvaluationSuite.write_artifacts` runs here, so its files land
    in the run's output directory and are listed in the report; ``write_files=False`` (the DDP ranks other
    than 0) skips them.
    """
    described = describe_model(model)
    data = datamodule.describe()
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    metrics = [metric for suite in suites for metric in suite.results]
    findings = [
        Finding(suite.suite, warning.check, warning.message, dict(warning.details))
        for suite in suites for warning in getattr(suite, "warnings", [])
    ]
    suite_timings = {f"suite/{suite.suite}": round(suite.seconds, 3) for suite in suites}
    return Report(
        run=RunInfo(
            id=uuid.uuid4().hex, name=str(cfg.get("name") or run_type), type=run_type, seed=cfg.get("seed"),
            started_at=started_at, finished_at=utc_now(), config=config, git_sha=git_sha(),
            robustlit_version=robustlit.__version__, packages=package_versions(), mlflow_run_id=mlflow_run_id,
        ),
        model=ModelInfo(name=model_name or described["name"], params=described["params"], checkpoint=checkpoint),
        data=DataInfo(name=data["name"], n_test=data["n_test"], fingerprint=data["fingerprint"]),
        metrics=metrics,
        timings={**{k: round(v, 3) for k, v in timings.items()}, **suite_timings},
        artifacts=[*artifacts, *(item for suite in suites if write_files
                                 for item in suite.write_artifacts(Path(cfg.output_dir)))],
        warnings=findings,
    )



def publish_report(report: Report, output_dir: Path, verbose: bool, loggers: Iterable[Any] = ()) -> Path:
    """Draw every plot the metric rows allow, write ``robustness_report.json`` and hand it to ``loggers`` (MLflow).

    If ``verbose``, print a summary.
    """
    for plot in plot_report(report, output_dir):
        report.artifacts.append(Artifact(plot.name, "plot", str(plot)))
    path = write_report(report, output_dir)
    log_report(loggers, report, path)
    if verbose:
        print_report(report)
        for finding in report.warnings:
            print(f"warning [{finding.suite}/{finding.check}]: {finding.message}")
        print(f"report: {path}")
    return path
