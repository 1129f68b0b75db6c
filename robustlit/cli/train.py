"""``robustlit-train``: fit a model with the chosen recipe, then run the evaluation suites.

Example:
    robustlit-train data=digits recipe=pgd_at_ls evaluation=[adversarial,calibration]
    robustlit-train -m recipe=baseline,pgd_at_ls seed=1,2
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from robustlit.cli.build import (
    build_datamodule,
    build_optional,
    build_section,
    build_suites,
    build_trainer,
    check_model_fits_data,
)
from robustlit.cli.record import build_report, publish_report, utc_now
from robustlit.cli.tracking import mlflow_run_id
from robustlit.errors import ConfigError
from robustlit.module import RobustClassifier
from robustlit.reporting import Artifact, Report
from robustlit.reporting.json import REPORT_FILENAME


def train(cfg: DictConfig, *, verbose: bool = True, callbacks: Sequence[L.Callback] = ()) -> tuple[Report, Path]:
    """Fit ``cfg``'s model with its regularizers, evaluate it and write ``robustness_report.json``.

    Args:
        cfg: A composed ``train`` config (see ``conf/train.yaml``); ``cfg.output_dir`` receives
            the report, the last checkpoint and the CSV logs.
        verbose: Print the metrics table and the report path.
        callbacks: Extra Lightning callbacks for the fit, e.g. ``robustlit-tune``'s pruning callback.

    Returns:
        The report and the path it was written to.

    Example:
        >>> from hydra import compose, initialize_config_dir
        >>> with initialize_config_dir(str(config_dir()), version_base=None):  # doctest: +SKIP
        ...     cfg = compose("train", overrides=["trainer=debug", "output_dir=/tmp/run"])
        >>> report, path = train(cfg)  # doctest: +SKIP
    """
    started_at = utc_now()
    output_dir = Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg, "fit")
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    if spec.get("checkpoint"):
        raise ConfigError("robustlit-train builds a fresh model; drop model.checkpoint, or use robustlit-eval for "
                          "a trained checkpoint")
    model = RobustClassifier(
        model=spec, num_classes=datamodule.num_classes, in_channels=datamodule.in_channels,
        mean=tuple(datamodule.mean), std=tuple(datamodule.std),
        optimizer=build_optional(cfg, "optimizer"), scheduler=build_optional(cfg, "scheduler"),
    )
    datamodule.setup("test")
    check_model_fits_data(model, datamodule)
    suites = build_suites(cfg)
    trainer = build_trainer(cfg, [*build_section(cfg, "regularizer"), *suites, *callbacks], output_dir,
                            checkpoints=True)
    began = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg, output_dir))
    fit_seconds = time.perf_counter() - began
    trainer.test(model, datamodule=datamodule, verbose=False)
    checkpoint = output_dir / "checkpoints" / "last.ckpt"
    metrics_csv = output_dir / "logs" / "metrics.csv"
    artifacts = [Artifact(metrics_csv.name, "table", str(metrics_csv))] if metrics_csv.is_file() else []
    if checkpoint.is_file():
        artifacts.append(Artifact(checkpoint.name, "checkpoint", str(checkpoint)))
    report = build_report(
        cfg, run_type="train", started_at=started_at, model=model.model, model_name=str(spec.get("arch")),
        checkpoint=str(checkpoint) if checkpoint.is_file() else None, datamodule=datamodule, suites=suites,
        timings={"fit": fit_seconds}, artifacts=artifacts, mlflow_run_id=mlflow_run_id(trainer.loggers),
        write_files=trainer.is_global_zero,
    )
    if not trainer.is_global_zero:  # under DDP every rank gets here; rank 0 alone writes the report
        return report, output_dir / REPORT_FILENAME
    return report, publish_report(report, output_dir, verbose, trainer.loggers)


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint ``trainer.fit`` continues from, as chosen by ``cfg.resume``.

    ``auto`` (the default) continues from ``output_dir/checkpoints/last.ckpt`` when it exists, which is how a
    SLURM job requeued after preemption or a timeout picks up where it stopped; ``never`` always starts
    fresh; any other value is the path of a checkpoint to continue from.

    Example:
        >>> resume_checkpoint(OmegaConf.create({"resume": "never"}), Path("runs/x")) is None
        True
    """
    choice = cfg.get("resume", "auto")
    if choice in (None, "never"):
        return None
    if choice == "auto":
        last = output_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(choice).is_file():
        raise ConfigError(f"resume={choice} is not a checkpoint file; pass resume=auto, resume=never or a .ckpt path")
    return str(choice)

