"""Spectral normalization with the operator norms of convolutions, as a projection after each optimizer step."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from robustlit.certify.lipschitz import conv_operator_norm, power_iteration


def layer_operator_norm(
    layer: nn.Module, input_shape: tuple[int, ...], iterations: int, vector: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Spectral norm of a ``Linear`` or ``Conv2d`` layer as an operator on inputs of ``input_shape``.

    Args:
        layer: The layer.
        input_shape: Shape of one input (without the batch dimension).
        iterations: Power iterations.
        vector: Warm start from the previous call.

    Returns:
        ``(σ, v)`` as in :func:`robustlit.certify.power_iteration`.

    Example:
        >>> conv = nn.Conv2d(2, 3, 3, padding=1)
        >>> sigma, v = layer_operator_norm(conv, (2, 6, 6), iterations=30)
        >>> tuple(v.shape)
        (1, 2, 6, 6)
    """
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        start = torch.randn(1, weight.shape[1], generator=torch.Generator().manual_seed(0)).to(weight)
        return power_iteration(lambda v: v @ weight.T, lambda u: u @ weight,
                               start if vector is None else vector, iterations)
    padding = (0, 0) if layer.padding == "valid" else layer.padding
    return conv_operator_norm(weight, input_shape, layer.stride, padding, layer.dilation, layer.groups,
                              iterations, vector)


class SpectralNorm(L.Callback):
    """Keep the operator norm of every ``Conv2d`` and ``Linear`` layer at most ``max_norm`` (works on any module).

    After each optimizer step, a layer whose spectral norm ``σ`` exceeds ``max_norm`` is rescaled by
    ``max_norm / σ`` (the projection of Gouk et al., "Regularisation of Neural Networks by Enforcing
    Lipschitz Continuity", 2021). ``σ`` is the norm of the operator the layer applies to its actual
    inputs, found by power iteration through ``conv2d`` and ``conv_transpose2d`` (Farnia et al.,
    "Generalizable Adversarial Training via Spectral Normalization", ICLR 2019), not the norm of the
    reshaped kernel, which can be off by a factor of the kernel size. Power-iteration vectors are
    warm-started from the previous step (as in Miyato et al. 2018) and saved in checkpoints.

    BatchNorm layers are not constrained; their scales still enter a global Lipschitz bound, so for
    Lipschitz certificates use a model without BatchNorm or account for it with
    :func:`robustlit.certify.lipschitz_bound`.

    Args:
        max_norm: Largest allowed operator norm of each layer.
        power_iterations: Power iterations per optimizer step.
        init_iterations: Power iterations the first time a layer is normalized.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[SpectralNorm(max_norm=1.0)], max_epochs=1)  # doctest: +SKIP
    """

    def __init__(self, max_norm: float = 1.0, power_iterations: int = 1, init_iterations: int = 20) -> None:
        if max_norm <= 0:
            raise MisconfigurationException(f"SpectralNorm needs max_norm > 0, got {max_norm}")
        if power_iterations < 1 or init_iterations < 1:
            raise MisconfigurationException(
                f"SpectralNorm needs power_iterations >= 1 and init_iterations >= 1, got {power_iterations} "
                f"and {init_iterations}"
            )
        self.max_norm = float(max_norm)
        self.power_iterations = power_iterations
        self.init_iterations = init_iterations
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._vectors: dict[str, Tensor] = {}
        self._hooks: list[RemovableHandle] = []

    @staticmethod
    def layers(model: nn.Module) -> dict[str, nn.Module]:
        """The layers this callback constrains, by name."""
        return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check the layers and record each one's input shape on its first forward pass."""
        if stage != "fit":
            return
        for name, layer in self.layers(pl_module).items():
            if isinstance(layer, nn.Conv2d) and (
                layer.padding_mode != "zeros" or layer.padding not in ("valid",) and isinstance(layer.padding, str)
            ):
                raise MisconfigurationException(
                    f"SpectralNorm cannot normalize {name} (padding={layer.padding!r}, padding_mode="
                    f"{layer.padding_mode!r}); use numeric zero padding"
                )
            self._hooks.append(layer.register_forward_pre_hook(self._recorder(name)))

    def _recorder(self, name: str) -> Any:
        def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            self._shapes.setdefault(name, tuple(inputs[0].shape[1:]))
        return record

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Project every layer back onto the operator-norm ball."""
        with torch.no_grad():
            for name, layer in self.layers(pl_module).items():
                shape = self._shapes.get(name)
                if shape is None:
                    continue
                vector = self._vectors.get(name)
                iterations = self.power_iterations if vector is not None else self.init_iterations
                if vector is not None:
                    vector = vector.to(layer.weight)
                sigma, self._vectors[name] = layer_operator_norm(layer, shape, iterations, vector)
                if float(sigma) > self.max_norm:
                    layer.weight.mul_(self.max_norm / float(sigma))

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Remove the shape-recording hooks."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @override
    def state_dict(self) -> dict[str, Any]:
        """Input shapes and power-iteration vectors, so a resumed run keeps its warm starts."""
        return {"shapes": dict(self._shapes), "vectors": {k: v.cpu() for k, v in self._vectors.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self._shapes = dict(state_dict.get("shapes", {}))
        self._vectors = dict(state_dict.get("vectors", {}))
