"""Build a model from a ``conf/model/*.yaml`` spec, and the registry of architectures."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from robustlit.errors import ConfigError
from robustlit.models.cifar import PreActResNet18, SmallCNN, WideResNet
from robustlit.models.loading import load_checkpoint
from robustlit.models.timm_wrapper import TimmClassifier

ModelBuilder = Callable[..., nn.Module]

#: Keys every model spec may hold besides the architecture's own options.
SPEC_KEYS: tuple[str, ...] = ("arch", "checkpoint", "mean", "std")
#: ``arch`` value for a self-contained checkpoint (TorchScript, torch.export, Lightning .ckpt).
CHECKPOINT_ARCH = "checkpoint"
_COMMON_ARGS = ("num_classes", "in_channels", "mean", "std")

#: Architecture name -> builder. Builders take ``num_classes``, ``in_channels``, ``mean`` and ``std``
#: as keywords plus their own options, which are the spec's remaining keys.
MODELS: dict[str, ModelBuilder] = {
    "smallcnn": SmallCNN,
    "preact_resnet18": PreActResNet18,
    "wrn28_10": WideResNet,
    "timm": TimmClassifier,
}


def register_model(name: str, builder: ModelBuilder) -> ModelBuilder:
    """Make ``builder`` available as ``model.arch=name``.

    Args:
        name: The ``arch`` value that selects it.
        builder: A class or function taking ``num_classes``, ``in_channels``, ``mean`` and ``std``
            as keywords; its other keyword parameters become the spec's options.

    Returns:
        ``builder``, unchanged.

    Raises:
        ValueError: If ``name`` is taken or ``builder`` lacks one of the common arguments.

    Example:
        >>> from robustlit.models.layers import Normalize
        >>> def mlp(num_classes, in_channels, mean, std, hidden=8):
        ...     flat = nn.Sequential(Normalize(mean, std), nn.Flatten())
        ...     head = nn.Sequential(nn.Linear(in_channels * 16, hidden), nn.Linear(hidden, num_classes))
        ...     return nn.Sequential(flat, head)
        >>> _ = register_model("mlp_doc", mlp)
        >>> spec = {"arch": "mlp_doc", "hidden": 4}
        >>> model = build_model(spec, num_classes=3, in_channels=1, mean=[0.5], std=[0.5])
        >>> model(torch.rand(2, 1, 4, 4)).shape
        torch.Size([2, 3])
        >>> del MODELS["mlp_doc"]
    """
    if name in MODELS or name == CHECKPOINT_ARCH:
        raise ValueError(f"model arch {name!r} is already registered")
    missing = [a for a in _COMMON_ARGS if a not in inspect.signature(builder).parameters]
    if missing:
        raise ValueError(f"builder for {name!r} must accept {', '.join(missing)} as keyword arguments")
    MODELS[name] = builder
    return builder


def arch_names() -> list[str]:
    """Return the valid ``model.arch`` values.

    Example:
        >>> "smallcnn" in arch_names() and "checkpoint" in arch_names()
        True
    """
    return [*sorted(MODELS), CHECKPOINT_ARCH]


def build_model(
    spec: Mapping[str, Any],
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Module:
    """Build the model a ``model`` config describes, loading ``spec["checkpoint"]`` if set.

    With an architecture and a checkpoint, a state_dict file is loaded into the built model; a
    self-contained file (TorchScript, torch.export, Lightning .ckpt) carries its own architecture
    and is used as is. ``arch: checkpoint`` (or null) requires a self-contained file.

    Args:
        spec: ``arch``, ``checkpoint`` (path or None), ``mean`` / ``std`` (None: use the data's),
            plus the architecture's options, e.g. ``{"arch": "smallcnn", "width": 32}``.
        num_classes: Number of classes in the data.
        in_channels: Number of input channels in the data.
        mean: The data's per-channel mean, used unless ``spec["mean"]`` is set.
        std: The data's per-channel standard deviation, used unless ``spec["std"]`` is set.

    Returns:
        The model; in eval mode if it came from a checkpoint.

    Raises:
        ConfigError: For an unknown arch, an unknown or invalid option, or mismatched mean/std.
        CheckpointError: If the checkpoint is missing, unreadable or does not fit the architecture.

    Example:
        >>> spec = {"arch": "smallcnn", "width": 8, "checkpoint": None, "mean": None, "std": None}
        >>> model = build_model(spec, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    options = dict(spec)
    arch = options.pop("arch", None)
    checkpoint = options.pop("checkpoint", None)
    if checkpoint == "???":  # an unfilled mandatory OmegaConf value, e.g. from conf/model/checkpoint.yaml
        checkpoint = None

    if arch is None and checkpoint is None:
        raise ConfigError(
            f"model.arch is not set; choose an architecture with model=<{'|'.join(sorted(MODELS))}> "
            "or load a self-contained file with model=checkpoint model.checkpoint=PATH"
        )
    if arch in (None, CHECKPOINT_ARCH):
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise ConfigError(
                f"model.{given[0]} has no effect with model.arch={arch}, whose checkpoint fixes the model; "
                "remove it or choose an architecture with model=<arch>"
            )
        if checkpoint is None:
            raise ConfigError(
                f"model.arch={arch} needs model.checkpoint=PATH to a TorchScript (.pt), torch.export "
                f"(.pt2) or Lightning (.ckpt) file, or an architecture: model=<{'|'.join(sorted(MODELS))}>"
            )
        return load_checkpoint(checkpoint)

    builder = MODELS.get(arch) if isinstance(arch, str) else None
    if builder is None:
        raise ConfigError(f"model.arch={arch} is unknown; choose one of {', '.join(arch_names())}")
    mean = _stats("mean", options.pop("mean", None), mean, in_channels)
    std = _stats("std", options.pop("std", None), std, in_channels)
    _check_options(arch, builder, options)
    if checkpoint is not None and options.get("pretrained"):
        # The checkpoint overwrites every weight, so downloading pretrained ones would be wasted.
        options["pretrained"] = False

    def make() -> nn.Module:
        try:
            return builder(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std, **options)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(f"model.arch={arch}: {e}") from e

    if checkpoint is None:
        return make()
    return load_checkpoint(checkpoint, arch_builder=make)


def describe_model(model: nn.Module) -> dict[str, Any]:
    """Summarise a model for the report's ``model`` section.

    Args:
        model: Any module, including loaded TorchScript and torch.export models.

    Returns:
        ``{"name": str, "params": int}``: a readable architecture name and the number of parameters.

    Example:
        >>> describe_model(SmallCNN(width=8))
        {'name': 'SmallCNN', 'params': 34578}
    """
    if isinstance(model, torch.jit.ScriptModule):
        name = f"torchscript/{model.original_name}"
    else:
        name = getattr(model, "model_name", None) or type(model).__name__
    return {"name": str(name), "params": sum(p.numel() for p in model.parameters())}


def _stats(key: str, override: Any, default: Sequence[float], in_channels: int) -> list[float]:
    values = default if override is None else override
    source = f"model.{key}" if override is not None else f"the data's {key}"
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}={values!r} must be a list of numbers, one per input channel") from e
    if len(values) != in_channels:
        raise ConfigError(
            f"{source}={values} has {len(values)} values but the data has {in_channels} channels; "
            f"pass model.{key}=[...] with {in_channels} values or model.{key}=null to use the data's"
        )
    if key == "std" and any(v <= 0 for v in values):
        raise ConfigError(f"{source}={values} must be positive; pass positive values or model.std=null")
    return values


def _check_options(arch: str, builder: ModelBuilder, options: Mapping[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    accepted = [n for n, p in params.items() if n not in _COMMON_ARGS and p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(list(SPEC_KEYS) + accepted)
        raise ConfigError(f"model.{unknown[0]} is not an option of model.arch={arch}; valid keys: {valid}")
    required = [n for n in accepted if params[n].default is inspect.Parameter.empty and n not in options]
    if required:
        raise ConfigError(f"model.arch={arch} needs model.{required[0]}=...; add it to the model config")
