"""Load a model from TorchScript, torch.export, Lightning .ckpt or state_dict files."""

from __future__ import annotations

import collections
import os
import pickle
import re
import typing
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlit.errors import CheckpointError, InputShapeError

_FORMATS = "TorchScript (.pt), torch.export (.pt2), Lightning (.ckpt) or state_dict file"
_LIGHTNING_HPARAMS = ("model", "num_classes", "in_channels", "mean", "std")


class ExportedModule(nn.Module):
    """A ``torch.export`` program as a module whose ``train()`` / ``eval()`` are no-ops.

    ``ExportedProgram.module()`` raises ``NotImplementedError`` on ``train()`` and ``eval()``
    (torch 2.14), but attacks and Lightning call both. The graph runs in the mode it was
    captured in (normally eval), so this wrapper always reports ``training=False``. Input
    gradients flow as usual. An input the program's shape guards reject raises
    :class:`~robustlit.errors.InputShapeError`.

    Args:
        program: The result of ``torch.export.load(path).module()``.
        source: Where it came from, for names and messages.

    Example:
        >>> class Net(nn.Module):
        ...     def forward(self, x):
        ...         return x.sum(dim=(2, 3))
        >>> program = torch.export.export(Net(), (torch.rand(2, 3, 4, 4),)).module()
        >>> model = ExportedModule(program, source="net.pt2").eval()
        >>> model.training, model(torch.ones(2, 3, 4, 4)).shape
        (False, torch.Size([2, 3]))
    """

    def __init__(self, program: nn.Module, source: str = "program") -> None:
        super().__init__()
        self.program = program
        self.source = source
        self.model_name = f"torch.export/{Path(source).stem}"
        self.training = False

    def train(self, mode: bool = True) -> ExportedModule:
        """Do nothing: the exported graph has a fixed mode.

        Args:
            mode: Ignored.

        Returns:
            ``self``.
        """
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the exported graph on ``x``."""
        try:
            return self.program(x)
        except AssertionError as e:
            if "Guard failed" not in str(e):
                raise
            raise InputShapeError(
                f"model.checkpoint={self.source} rejects inputs of shape {tuple(x.shape)} ({e}); "
                "evaluate it on data of the shape it was exported for"
            ) from e


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch_builder: Callable[[], nn.Module] | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a model, detecting the file's format from its contents rather than its suffix.

    - TorchScript archive: ``torch.jit.load``.
    - torch.export archive (.pt2): ``torch.export.load(path).module()`` wrapped in :class:`ExportedModule`.
    - Lightning .ckpt of a ``RobustClassifier``: the architecture is rebuilt from
      ``hyper_parameters`` (``model``, ``num_classes``, ``in_channels``, ``mean``, ``std``) and the
      ``model.``-prefixed weights are loaded strictly.
    - state_dict (``torch.save(model.state_dict())``): loaded strictly into ``arch_builder()``.

    Pickles are read with ``weights_only=True``; OmegaConf containers (Hydra configs saved as
    hyper-parameters) are allowed, other Python objects are refused.

    Args:
        path: The checkpoint file.
        arch_builder: Builds the architecture for a state_dict (or a Lightning .ckpt without
            robustlit hyper-parameters). Self-contained formats ignore it.
        map_location: Device for the loaded tensors (TorchScript and pickles).

    Returns:
        The model, in eval mode.

    Raises:
        CheckpointError: If the file is missing, unreadable, of an unknown kind, a state_dict with
            no ``arch_builder``, or does not fit the architecture.

    Example:
        >>> import tempfile
        >>> from robustlit.models.cifar import SmallCNN
        >>> path = Path(tempfile.mkdtemp()) / "weights.pt"
        >>> torch.save(SmallCNN(width=4).state_dict(), path)
        >>> model = load_checkpoint(path, arch_builder=lambda: SmallCNN(width=4))
        >>> model.training
        False
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"model.checkpoint={path} does not exist; pass an existing {_FORMATS}")
    if not path.is_file():
        raise CheckpointError(f"model.checkpoint={path} is not a file; pass a {_FORMATS}")

    kind = _archive_kind(path)
    if kind == "export":
        model: nn.Module = _load_exported(path)
    elif kind == "torchscript":
        model = _load_torchscript(path, map_location)
    else:
        model = _from_pickle(_torch_load(path, map_location), path, arch_builder)
    return model.eval()


def _archive_kind(path: Path) -> str:
    """Tell torch.export, TorchScript and torch.save files apart by the names inside the zip."""
    if not zipfile.is_zipfile(path):
        return "pickle"  # the legacy torch.save format, or not a checkpoint at all
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.rsplit("/", 1)[-1] for n in archive.namelist()]
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"model.checkpoint={path} is a damaged archive ({e}); pass a {_FORMATS}") from e
    if "archive_format" in names:
        return "export"
    if "constants.pkl" in names:
        return "torchscript"
    return "pickle"


def _load_exported(path: Path) -> nn.Module:
    try:
        # A file object, because torch.export.load only takes a path that ends in .pt2.
        with path.open("rb") as f:
            program = torch.export.load(f).module()
    except Exception as e:
        # torch.export.load logs the underlying error; its exception text adds nothing.
        raise CheckpointError(
            f"model.checkpoint={path} looks like a torch.export archive but does not load; re-export "
            "the model with torch.export.save"
        ) from e
    return ExportedModule(program, source=str(path))


def _load_torchscript(path: Path, map_location: str | torch.device) -> nn.Module:
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated, but TorchScript files are still a supported input.
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location=map_location)
    except Exception as e:
        raise CheckpointError(
            f"model.checkpoint={path} looks like TorchScript but does not load "
            f"({type(e).__name__}: {_first_line(e)}); re-save it with torch.jit.save or use torch.export"
        ) from e


def _omegaconf_globals() -> list[Any]:
    from omegaconf import DictConfig, ListConfig, base, nodes

    return [
        DictConfig, ListConfig, base.ContainerMetadata, base.Metadata, nodes.AnyNode, nodes.StringNode,
        nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode, typing.Any, dict, list, int,
        collections.defaultdict,
    ]  # fmt: skip


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        with torch.serialization.safe_globals(_omegaconf_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if isinstance(e, pickle.UnpicklingError) and unsafe:
            raise CheckpointError(
                f"model.checkpoint={path} holds a pickled {unsafe.group(1)}, which is unsafe to load; "
                "re-save the model as a state_dict (torch.save(model.state_dict(), path)), TorchScript "
                "or torch.export"
            ) from e
        # torch.load fails in many ways on foreign or truncated files; the chained error has details.
        raise CheckpointError(
            f"model.checkpoint={path} is damaged or not a PyTorch checkpoint; pass a {_FORMATS}"
        ) from e


def _from_pickle(obj: Any, path: Path, arch_builder: Callable[[], nn.Module] | None) -> nn.Module:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        hparams = obj.get("hyper_parameters") or {}
        state = _strip_prefix(obj["state_dict"], "model.")
        if isinstance(hparams.get("model"), Mapping) and all(k in hparams for k in _LIGHTNING_HPARAMS):
            return _load_state(_rebuild(hparams, path), state, path)
        what = "a Lightning checkpoint without robustlit hyper_parameters"
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, what = obj, "a state_dict"
    else:
        keys = f" with keys {_few(list(obj))}" if isinstance(obj, Mapping) else ""
        raise CheckpointError(
            f"model.checkpoint={path} holds a {type(obj).__name__}{keys}, not a model or state_dict; "
            f"pass a {_FORMATS}"
        )
    if arch_builder is None:
        raise CheckpointError(
            f"model.checkpoint={path} is {what} and holds no architecture; choose the one it was saved "
            f"from with model=<{'|'.join(_arch_choices())}> and keep model.checkpoint=PATH"
        )
    return _load_state(arch_builder(), state, path)


def _rebuild(hparams: Mapping[str, Any], path: Path) -> nn.Module:
    # Imported here because the factory imports this module to load checkpoints.
    from robustlit.errors import ConfigError
    from robustlit.models.factory import build_model

    spec = {**hparams["model"], "checkpoint": None}
    try:
        return build_model(
            spec,
            num_classes=int(hparams["num_classes"]),
            in_channels=int(hparams["in_channels"]),
            mean=list(hparams["mean"]),
            std=list(hparams["std"]),
        )
    except ConfigError as e:
        raise CheckpointError(
            f"model.checkpoint={path} was saved with model={dict(spec)}, which cannot be rebuilt here ({e}); "
            "install the robustlit version that wrote it or register its architecture"
        ) from e


def _load_state(model: nn.Module, state: Mapping[str, Any], path: Path) -> nn.Module:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or resized:
        problems = [
            f"{label} {_few(keys)}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape (file vs model)", resized),
            )
            if keys
        ]
        raise CheckpointError(
            f"model.checkpoint={path} does not fit {type(model).__name__}: {'; '.join(problems)}; choose the "
            f"architecture and options it was saved with (model=<{'|'.join(_arch_choices())}>, e.g. "
            "model.width) and the data it was trained on"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"model.checkpoint={path} does not load ({_first_line(e)})") from e
    return model


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if not any(k.startswith(prefix) for k in state):
        return dict(state)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _arch_choices() -> list[str]:
    from robustlit.models.factory import MODELS

    return sorted(MODELS)


def _few(items: list[Any], n: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return f"[{shown}{f', ... (+{len(items) - n})' if len(items) > n else ''}]"


def _first_line(e: BaseException, limit: int = 160) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:limit] if lines else "no message"
