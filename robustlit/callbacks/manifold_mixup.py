"""Manifold Mixup: mix hidden representations of pairs of examples at a random layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from robustlit.callbacks.mixup import Mixup, mixup_batch
from robustlit.losses import one_hot_targets
from robustlit.module import StepContext

INPUT = "input"
"""Layer name that mixes the inputs themselves (input Mixup)."""


class ManifoldMixup(Mixup):
    """Manifold Mixup (batch transform plus a one-shot forward hook; works on any module).

    Reference: Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States",
    ICML 2019 (α = 2; layers chosen uniformly among the input and early blocks). Each step draws a
    layer from ``layers``, λ ~ Beta(α, α) and a partner permutation; the targets are mixed now and
    the chosen layer's output is replaced by ``λ·h + (1 − λ)·h[perm]`` during the next forward pass
    (the training forward: the transform runs last, ``order = 90``, after adversarial examples).
    Shares Mixup's seeding and resumable random state.

    Args:
        layers: Names of submodules of the LightningModule (as in ``named_modules()``) whose outputs may be
            mixed; ``"input"`` mixes the inputs. For ``model=smallcnn``: ``["input", "model.features.0",
            "model.features.2", "model.features.4"]``.
        mixup_alpha: Beta concentration α (> 0).
        num_classes: Number of classes; read from ``pl_module.num_classes`` when omitted.
        prob: Probability of mixing a given batch.
        seed: Seed of the draws; defaults to ``torch.initial_seed()`` at setup.

    Example:
        >>> import lightning as L
        >>> mm = ManifoldMixup(layers=["input", "model.features.2"], mixup_alpha=2.0)
        >>> trainer = L.Trainer(callbacks=[mm], max_epochs=1)  # doctest: +SKIP
    """

    order = 90

    def __init__(self, layers: Sequence[str] = (INPUT,), mixup_alpha: float = 2.0, num_classes: int | None = None,
                 prob: float = 1.0, seed: int | None = None) -> None:
        super().__init__(mixup_alpha=mixup_alpha, num_classes=num_classes, prob=prob, seed=seed)
        if not layers:
            raise MisconfigurationException('ManifoldMixup needs at least one layer name (or "input") in layers')
        self.layers = list(layers)
        self._modules: dict[str, nn.Module] = {}
        self._pending: RemovableHandle | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve the layer names against the module."""
        if stage == "fit":
            named = dict(pl_module.named_modules())
            unknown = [name for name in self.layers if name != INPUT and name not in named]
            if unknown:
                candidates = ", ".join(name for name in list(named)[1:12] if name)
                raise MisconfigurationException(
                    f"ManifoldMixup layers {unknown} are not submodules of {type(pl_module).__name__}; use "
                    f'"input" or names from named_modules(), e.g. {candidates}'
                )
            self._modules = {name: named[name] for name in self.layers if name != INPUT}
        super().setup(trainer, pl_module, stage)

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Mix the targets, and the inputs or (through a hook) the chosen layer's output."""
        assert self._rng is not None and self.num_classes is not None, "ManifoldMixup.setup() has not run"
        targets = one_hot_targets(ctx.targets, self.num_classes).to(ctx.inputs.dtype)
        if self._rng.random() >= self.prob:
            return ctx.inputs, targets
        layer = self.layers[int(self._rng.integers(len(self.layers)))]
        lam = float(self._rng.beta(self.mixup_alpha, self.mixup_alpha))
        permutation = torch.from_numpy(self._rng.permutation(ctx.inputs.shape[0])).to(ctx.inputs.device)
        if layer == INPUT:
            return mixup_batch(ctx.inputs, targets, lam, permutation)
        self._hook_once(self._modules[layer], lam, permutation)
        return ctx.inputs, lam * targets + (1.0 - lam) * targets[permutation]

    def _hook_once(self, module: nn.Module, lam: float, permutation: Tensor) -> None:
        if self._pending is not None:  # a previous step's hook never fired (no forward happened)
            self._pending.remove()

        def mix(_module: nn.Module, _args: Any, output: Tensor) -> Tensor:
            self._pending.remove()  # type: ignore[union-attr]
            self._pending = None
            return lam * output + (1.0 - lam) * output[permutation]

        self._pending = module.register_forward_hook(mix)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Drop a hook that has not fired and unregister."""
        if self._pending is not None:
            self._pending.remove()
            self._pending = None
        super().teardown(trainer, pl_module, stage)
