"""``robustlit-eval``: evaluate any checkpoint with the configured suites, without training.

Example:
    robustlit-eval model.checkpoint=smallcnn_fgsmat.torchscript.pt data=imagefolder \
        data.root=cifar10/test data.limit_test=500 evaluation=[adversarial]
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from robustlit.cli.build import build_datamodule, build_suites, build_trainer, check_model_fits_data
from robustlit.cli.record import build_report, publish_report, utc_now
from robustlit.cli.tracking import mlflow_run_id
from robustlit.errors import ConfigError
from robustlit.models import build_model
from robustlit.module import RobustClassifier
from robustlit.reporting import Report
from robustlit.reporting.json import REPORT_FILENAME


def evaluate(cfg: DictConfig, *, verbose: bool = True) -> tuple[Report, Path]:
    """Load ``cfg.model``, run the evaluation suites on ``cfg.data``'s test set and write the report.

    Args:
        cfg: A composed ``eval`` config (see ``conf/eval.yaml``).
        verbose: Print the metrics table and the report path.

    Returns:
        The report and the path it was written to.

    Example:
        >>> with initialize_config_dir(str(config_dir()), version_base=None):  # doctest: +SKIP
        ...     cfg = compose("eval", overrides=["model.checkpoint=model.pt", "output_dir=/tmp/eval"])
        >>> report, path = evaluate(cfg)  # doctest: +SKIP
    """
    started_at = utc_now()
    output_dir = Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    if not spec.get("checkpoint"):
        raise ConfigError("robustlit-eval needs trained weights; pass model.checkpoint=PATH")
    datamodule = build_datamodule(cfg, "test")
    network = build_model(spec, num_classes=datamodule.num_classes, in_channels=datamodule.in_channels,
                          mean=tuple(datamodule.mean), std=tuple(datamodule.std))
    check_model_fits_data(network, datamodule, option=f"model.checkpoint={spec['checkpoint']}")
    module = RobustClassifier(model=network, num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    suites = build_suites(cfg)
    trainer = build_trainer(cfg, suites, output_dir, checkpoints=False)
    began = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    checkpoint = str(spec["checkpoint"])
    model_name = spec.get("arch") if spec.get("arch") not in (None, "checkpoint") else Path(checkpoint).name
    report = build_report(
        cfg, run_type="evaluate", started_at=started_at, model=network, model_name=str(model_name),
        checkpoint=checkpoint, datamodule=datamodule, suites=suites,
        timings={"test": time.perf_counter() - began}, artifacts=[], mlflow_run_id=mlflow_run_id(trainer.loggers),
        write_files=trainer.is_global_zero,
    )
    if not trainer.is_global_zero:  # under DDP every rank gets here; rank 0 alone writes the report
        return report, output_dir / REPORT_FILENAME
    return report, publish_report(report, output_dir, verbose, trainer.loggers)

