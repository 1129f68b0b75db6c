"""Turn a composed config into a datamodule, callbacks, suites and a Trainer, with clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from robustlit.cli.app import user_message
from robustlit.errors import ConfigError, InputShapeError
from robustlit.module import unpack_batch
from robustlit.suites import CleanSuite, EvaluationSuite


def instantiate_option(node: Any, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with errors rewritten to name the config option.

    Example:
        >>> instantiate_option(OmegaConf.create({"_target_": "builtins.dict", "a": 1}), "x")
        {'a': 1}
    """
    try:
        return instantiate(node, **kwargs)
    except Exception as error:  # noqa: BLE001 - re-raised unchanged unless it is a user error
        message = user_message(error)
        if message is None:
            raise
        raise ConfigError(f"invalid {where}: {message}") from error


def build_datamodule(cfg: DictConfig, stage: str) -> Any:
    """Instantiate ``cfg.data`` and run its ``prepare_data`` and ``setup(stage)``."""
    datamodule = instantiate_option(cfg.data, "data")
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


def build_optional(cfg: DictConfig, key: str) -> Any:
    """Instantiate ``cfg[key]`` (for example a partial optimizer), or return ``None`` if it is unset."""
    node = cfg.get(key)
    return None if node is None else instantiate_option(node, key)


def build_section(cfg: DictConfig, section: str) -> list[Any]:
    """Instantiate every entry of a name → config mapping such as ``regularizer`` or ``evaluation``."""
    node = cfg.get(section)
    if node is None:
        return []
    if not isinstance(node, Mapping):
        raise ConfigError(f"{section} must map names to configs, got {OmegaConf.to_yaml(node).strip()!r}")
    return [instantiate_option(item, f"{section}.{name}") for name, item in node.items()]


def build_suites(cfg: DictConfig) -> list[EvaluationSuite]:
    """The configured evaluation suites, with clean accuracy always first."""
    suites = build_section(cfg, "evaluation")
    if not any(isinstance(suite, CleanSuite) for suite in suites):
        suites.insert(0, CleanSuite())
    return suites


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], output_dir: Path, checkpoints: bool) -> L.Trainer:
    """Instantiate ``cfg.trainer`` with our callbacks, the ``logger`` group and (optionally) a last-epoch checkpoint.

    Without a ``logger`` group in the config, a CSV logger writes ``output_dir/logs/metrics.csv``. Under SLURM,
    Lightning's own auto-requeue is switched off: submitit requeues the job (``conf/hydra/launcher/slurm*.yaml``)
    and the run resumes from ``last.ckpt``, so the two mechanisms do not both requeue.
    """
    callbacks = list(callbacks)
    enable_checkpointing = checkpoints and cfg.trainer.get("enable_checkpointing", True)
    if enable_checkpointing:
        callbacks.append(ModelCheckpoint(dirpath=output_dir / "checkpoints", save_last=True, save_top_k=0))
    if cfg.get("logger") is None:
        loggers = [CSVLogger(save_dir=str(output_dir), name="logs", version="")]
    else:
        loggers = build_section(cfg, "logger")
    extra = {}
    if SLURMEnvironment.detect() and not cfg.trainer.get("plugins"):
        extra["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    return instantiate_option(
        cfg.trainer, "trainer", callbacks=callbacks, logger=loggers, default_root_dir=str(output_dir),
        enable_checkpointing=enable_checkpointing, **extra,
    )


def check_model_fits_data(model: nn.Module, datamodule: Any, option: str = "model") -> None:
    """Run one test batch through ``model`` and explain any shape or class-count mismatch.

    Raises:
        InputShapeError: If the forward pass fails or the logits do not match the data's classes.
    """
    batch = next(iter(datamodule.test_dataloader()))
    inputs, _ = unpack_batch(batch)
    inputs = inputs[:2]
    shape = tuple(inputs.shape[1:])
    expected = _first_conv_channels(model)
    if expected is not None and expected != shape[0]:
        # checked up front: a (1, C, 1, 1) normalization would silently broadcast grayscale to C channels
        raise InputShapeError(
            f"{option} expects {expected}-channel images but data={datamodule.name} gives {shape[0]} "
            f"(shape {shape}); set data.channels={expected} or use a {shape[0]}-channel model"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(inputs)
    except (RuntimeError, ValueError, AssertionError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputShapeError(
            f"{option} cannot take inputs of shape {shape} from data={datamodule.name} ({detail}); "
            "match data.image_size/data.channels to the model, or pick another model"
        ) from None
    finally:
        model.train(was_training)
    if logits.ndim != 2 or logits.shape[1] != datamodule.num_classes:
        raise InputShapeError(
            f"{option} outputs {tuple(logits.shape[1:])} scores per image but data={datamodule.name} has "
            f"{datamodule.num_classes} classes; use a model trained on this data"
        )


def _first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the first 4-D (convolution) weight, or ``None`` for models without one."""
    for parameter in model.parameters():
        if parameter.ndim == 4:
            return int(parameter.shape[1])
    return None
