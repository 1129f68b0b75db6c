"""Architecture-level regularizers added with forward hooks: dropout, DropConnect and noise injection.

Hooks leave the model's parameters and ``state_dict`` keys unchanged, so checkpoints load into the
plain architecture; they act only in training mode and are removed when fitting ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Tanh, nn.Sigmoid,
)
"""Module types whose outputs count as activations when no layer names are given."""
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


class LayerHooks(L.Callback):
    """Base class: forward hooks on chosen submodules while fitting (works on any LightningModule).

    Modules are chosen by name (``layers``, as in ``named_modules()``) or, by default, by type
    (:attr:`default_types`). Subclasses implement :meth:`hook`, which receives the module, its
    inputs and its output and returns the new output.

    Args:
        layers: Names of the submodules to hook; ``None`` hooks every module of :attr:`default_types`.

    Example:
        >>> class Double(LayerHooks):
        ...     default_types = (torch.nn.ReLU,)
        ...     def hook(self, module, inputs, output):
        ...         return 2 * output
        >>> Double().layers is None
        True
    """

    default_types: tuple[type[nn.Module], ...] = ACTIVATIONS
    allowed_types: tuple[type[nn.Module], ...] | None = None
    """Types a named layer must have (``None``: any)."""

    def __init__(self, layers: Sequence[str] | None = None) -> None:
        self.layers = None if layers is None else list(layers)
        self._handles: list[RemovableHandle] = []

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        """The new output of ``module`` in training mode."""
        raise NotImplementedError

    def select(self, pl_module: nn.Module) -> list[nn.Module]:
        """The submodules to hook, with clear errors for unknown names, wrong types or no match."""
        named = dict(pl_module.named_modules())
        kind = type(self).__name__
        if self.layers is None:
            chosen = [m for m in named.values() if isinstance(m, self.default_types)]
            if not chosen:
                types = ", ".join(t.__name__ for t in self.default_types)
                raise MisconfigurationException(
                    f"{kind} found no {types} modules in {type(pl_module).__name__}; name the layers to hook with "
                    "layers=[...] (names from named_modules())"
                )
            return chosen
        unknown = [name for name in self.layers if name not in named]
        if unknown:
            raise MisconfigurationException(
                f"{kind} layers {unknown} are not submodules of {type(pl_module).__name__}; use names from "
                "named_modules()"
            )
        chosen = [named[name] for name in self.layers]
        if self.allowed_types is not None:
            wrong = [n for n, m in zip(self.layers, chosen, strict=True) if not isinstance(m, self.allowed_types)]
            if wrong:
                raise MisconfigurationException(
                    f"{kind} layers {wrong} are not Linear or convolution layers, whose weights it perturbs"
                )
        return chosen

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Hook the chosen modules when fitting starts."""
        if stage != "fit":
            return
        for module in self.select(pl_module):
            self._handles.append(module.register_forward_hook(self._train_only))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _train_only(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor | None:
        return self.hook(module, inputs, output) if module.training else None


def _check_rate(kind: str, option: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise MisconfigurationException(f"{kind} needs 0 <= {option} < 1, got {value}")


def forward_with_weight(module: nn.Module, inputs: Tensor, weight: Tensor) -> Tensor:
    """``module``'s output on ``inputs`` computed with ``weight`` in place of its own (Linear or conv).

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> x = torch.ones(1, 2)
        >>> torch.allclose(forward_with_weight(layer, x, layer.weight), layer(x))
        True
    """
    if isinstance(module, nn.Linear):
        return F.linear(inputs, weight, module.bias)
    return module._conv_forward(inputs, weight, module.bias)  # type: ignore[operator]


class Dropout(LayerHooks):
    """Inverted dropout on the outputs of chosen layers (forward hooks; works on any LightningModule).

    Reference: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 2014. Each output unit is zeroed with probability ``p`` and the rest scaled by ``1/(1 − p)``;
    evaluation is unchanged. By default every activation module (ReLU, GELU …) is hooked. For timm
    models, ``model.drop_rate`` is the built-in alternative (dropout before the classifier).

    Args:
        p: Drop probability in [0, 1).
        layers: Names of the modules whose outputs are dropped; ``None``: every activation module.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[Dropout(p=0.1)])  # doctest: +SKIP
    """

    def __init__(self, p: float = 0.1, layers: Sequence[str] | None = None) -> None:
        super().__init__(layers)
        _check_rate("Dropout", "p", p)
        self.p = p

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        """``F.dropout`` of the output."""
        return F.dropout(output, self.p, training=True)


class DropConnect(LayerHooks):
    """Drop individual weights of Linear/conv layers during training (forward hooks; any LightningModule).

    Reference: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013. Each weight
    is zeroed with probability ``p`` (one mask per batch) and the kept ones scaled by ``1/(1 − p)``,
    so evaluation uses the plain weights (the paper instead samples a Gaussian approximation at test
    time). The hooked layer's output is recomputed with the masked weight. By default every Linear
    layer is hooked (the paper applies DropConnect to the fully connected layers).

    Args:
        p: Drop probability in [0, 1).
        layers: Names of Linear or convolution layers; ``None``: every Linear layer.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[DropConnect(p=0.2)])  # doctest: +SKIP
    """

    default_types = (nn.Linear,)
    allowed_types = WEIGHT_LAYERS

    def __init__(self, p: float = 0.2, layers: Sequence[str] | None = None) -> None:
        super().__init__(layers)
        _check_rate("DropConnect", "p", p)
        self.p = p

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        """The output recomputed with a dropped-out weight."""
        if self.p == 0:
            return output
        weight = module.weight
        mask = torch.rand_like(weight) >= self.p
        return forward_with_weight(module, inputs[0], weight * mask / (1.0 - self.p))


class NoiseInjection(LayerHooks):
    """Additive Gaussian noise on activations and on weights during training (forward hooks; any LightningModule).

    Reference: He, Rakin & Fan, "Parametric Noise Injection: Trainable Randomness to Improve Deep Neural
    Network Robustness against Adversarial Attack", CVPR 2019 (noise scaled by each tensor's standard
    deviation, here with a fixed scale instead of a trained one); An, "The Effects of Adding Noise
    During Backpropagation Training on a Generalization Performance", Neural Computation 1996.
    Activations (outputs of activation modules, or of ``layers``) get ``+ σ_a·N(0, 1)``; the weights of
    every Linear/conv layer get ``+ σ_w·std(W)·N(0, 1)``, redrawn each forward pass. Evaluation and
    attacks (eval mode) see the noise-free model.

    Args:
        activation_std: σ_a, in activation units (0: off).
        weight_std: σ_w, relative to each weight tensor's standard deviation (0: off).
        layers: Names of the modules whose outputs get activation noise; ``None``: every activation module.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[NoiseInjection(activation_std=0.1, weight_std=0.05)])  # doctest: +SKIP
    """

    def __init__(self, activation_std: float = 0.1, weight_std: float = 0.0, layers: Sequence[str] | None = None
                 ) -> None:
        super().__init__(layers)
        if activation_std < 0 or weight_std < 0:
            raise MisconfigurationException(
                f"NoiseInjection needs activation_std >= 0 and weight_std >= 0, got {activation_std}, {weight_std}"
            )
        if activation_std == 0 and weight_std == 0:
            raise MisconfigurationException("NoiseInjection with activation_std=0 and weight_std=0 does nothing")
        self.activation_std, self.weight_std = activation_std, weight_std
        self._activation_layers: set[nn.Module] = set()
        self._weight_layers: set[nn.Module] = set()

    def select(self, pl_module: nn.Module) -> list[nn.Module]:
        """Activation modules (if ``activation_std > 0``) and Linear/conv layers (if ``weight_std > 0``)."""
        self._activation_layers = set(super().select(pl_module)) if self.activation_std > 0 else set()
        self._weight_layers = set()
        if self.weight_std > 0:
            self._weight_layers = {m for m in pl_module.modules() if isinstance(m, WEIGHT_LAYERS)}
        return list(self._activation_layers | self._weight_layers)

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        """Recompute with noisy weights (weight layers), then add noise to the output (activation layers)."""
        if module in self._weight_layers:
            weight = module.weight
            noisy = weight + self.weight_std * weight.detach().std() * torch.randn_like(weight)
            output = forward_with_weight(module, inputs[0], noisy)
        if module in self._activation_layers:
            output = output + self.activation_std * torch.randn_like(output)
        return output
