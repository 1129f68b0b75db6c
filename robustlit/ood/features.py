"""Read a layer's activations with forward hooks, by name or the penultimate layer found automatically."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustlit.errors import ConfigError


def final_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The last ``nn.Linear`` registered in ``model`` (its classification head), with its name.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> final_linear(net)[0]
        '3'
    """
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    return found


def hookable(model: nn.Module) -> bool:
    """Whether forward hooks on ``model``'s submodules run (False for TorchScript, whose forward skips them).

    Example:
        >>> hookable(nn.Linear(2, 2))
        True
    """
    return not any(isinstance(module, torch.jit.ScriptModule) for module in model.modules())


def _check_hookable(model: nn.Module) -> None:
    if not hookable(model):
        raise ConfigError(
            "feature-based OOD detectors read activations with forward hooks, which TorchScript modules do "
            "not run; load the weights into their architecture instead (e.g. model=smallcnn "
            "model.checkpoint=weights.state_dict.pt) or use the logit detectors (msp, maxlogit, energy, odin)"
        )


class FeatureExtractor:
    """Run a model and return ``(features, logits)``, the features read by a forward hook.

    With ``layer=None`` the features are the input of the model's final ``nn.Linear`` (the penultimate
    representation, found automatically). With a layer name they are that module's output; 4-D outputs
    ``(N, C, H, W)`` are averaged over space. Features are flattened to ``(N, D)`` float32. Hooks are
    attached only during each call, so the model is left as it was.

    Args:
        model: Any module mapping images to logits (not TorchScript, whose forward skips hooks).
        layer: Name of a submodule from ``model.named_modules()``; a name that only exists under a
            ``model.`` prefix (a LightningModule wrapping the network) is found too.

    Raises:
        ConfigError: For TorchScript models, unknown layer names, or models without an ``nn.Linear``
            when ``layer`` is None.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
        >>> features, logits = FeatureExtractor(net)(torch.rand(2, 3, 2, 2))
        >>> tuple(features.shape), tuple(logits.shape)
        ((2, 5), (2, 3))
    """

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        _check_hookable(model)
        self.model = model
        self.layer = layer
        head = final_linear(model)
        self.head: nn.Linear | None = None if head is None else head[1]
        if layer is None:
            if head is None:
                raise ConfigError(
                    f"{type(model).__name__} has no nn.Linear head to take penultimate features from; "
                    "pass the detector's layer=NAME (a module from model.named_modules())"
                )
            self.layer_name, self.module = head[0], head[1]
        else:
            modules = dict(model.named_modules())
            name = layer if layer in modules else f"model.{layer}"
            if name not in modules:
                choices = [n for n in modules if n][:12]
                raise ConfigError(f"layer={layer!r} is not a module of the model; choose one of {choices} …")
            self.layer_name, self.module = name, modules[name]

    @property
    def is_penultimate(self) -> bool:
        """Whether the features are the input of the final linear layer."""
        return self.layer is None

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``(N, D)`` and logits ``(N, K)`` of a batch."""
        captured: list[Tensor] = []
        if self.is_penultimate:

            def read_input(module: nn.Module, inputs: tuple[Any, ...]) -> None:
                captured.append(inputs[0])

            handle = self.module.register_forward_pre_hook(read_input)
        else:

            def read_output(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                captured.append(output[0] if isinstance(output, tuple | list) else output)

            handle = self.module.register_forward_hook(read_output)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if not captured:
            raise ConfigError(
                f"layer {self.layer_name!r} did not run in {type(self.model).__name__}.forward (exported or "
                "scripted graphs skip hooks); pass an eager nn.Module or another layer"
            )
        features = captured[-1]
        if features.ndim == 4:
            features = features.mean(dim=(2, 3))
        return features.flatten(1).float(), logits.float()
