"""Base classes of the regularizers that add a loss term or replace the base loss of a RobustModule."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.module import RobustModule, StepContext


def require_robust_module(callback: L.Callback, pl_module: L.LightningModule) -> RobustModule:
    """Return ``pl_module`` if it opted in to the RobustModule protocol, else raise a clear error.

    Example:
        >>> require_robust_module(L.Callback(), L.LightningModule())
        Traceback (most recent call last):
        ...
        lightning.fabric.utilities.exceptions.MisconfigurationException: Callback changes the training loss, ...
    """
    if not isinstance(pl_module, RobustModule):
        raise MisconfigurationException(
            f"{type(callback).__name__} changes the training loss, so it needs a module that opts in to it: add "
            f"robustlit.module.RobustModule to the bases of {type(pl_module).__name__} (or use RobustClassifier)"
        )
    return pl_module


class LossTermCallback(L.Callback):
    """A callback that adds ``weight * term(ctx)`` to a RobustModule's loss (needs RobustModule).

    It registers :meth:`term` in ``setup("fit")`` under :attr:`name` (logged as ``train/reg/<name>``)
    and removes it in ``teardown``. Subclasses implement :meth:`term`; those that need to touch the
    batch before the forward pass also override :meth:`transform` and set :attr:`order`.

    Args:
        weight: Multiplier of the term in the loss.

    Example:
        >>> class Zero(LossTermCallback):
        ...     name = "zero"
        ...     def term(self, ctx):
        ...         return ctx.logits.sum() * 0
        >>> Zero(weight=2.0).weight
        2.0
    """

    name: str = "loss_term"
    """Registration name and the ``train/reg/<name>`` log key."""
    order: int | None = None
    """Position of :meth:`transform` among batch transforms; ``None`` registers no transform."""

    def __init__(self, weight: float = 1.0) -> None:
        if weight < 0:
            raise MisconfigurationException(f"{type(self).__name__} needs weight >= 0, got {weight}")
        self.weight = float(weight)
        self._registered_on: RobustModule | None = None

    def term(self, ctx: StepContext) -> Tensor:
        """The unweighted loss term of this step (``ctx.logits`` is set)."""
        raise NotImplementedError

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """New ``(inputs, targets)`` before the forward pass; used only when :attr:`order` is set."""
        return ctx.inputs, ctx.targets

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Register the term (and transform) with the RobustModule when fitting starts."""
        if stage != "fit":
            return
        module = require_robust_module(self, pl_module)
        if self.order is not None:
            module.register_batch_transform(f"{self.name}_inputs", self.transform, order=self.order)
        module.register_loss_term(self.name, self.term, weight=self.weight)
        self._registered_on = module

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Unregister, so the module trains plainly if reused without this callback."""
        if self._registered_on is not None:
            self._registered_on.unregister(self.name)
            self._registered_on.unregister(f"{self.name}_inputs")
            self._registered_on = None


class BaseLossCallback(L.Callback):
    """A callback that replaces a RobustModule's cross-entropy by :meth:`loss` (needs RobustModule).

    Only one base-loss replacement can be active; batch transforms (mixup, label smoothing,
    adversarial examples) and loss terms still apply around it.

    Example:
        >>> import torch
        >>> class Sum(BaseLossCallback):
        ...     name = "sum"
        ...     def loss(self, logits, targets):
        ...         return logits.sum()
        >>> float(Sum().loss(torch.ones(2, 2), torch.tensor([0, 1])))
        4.0
    """

    name: str = "base_loss"

    def __init__(self) -> None:
        self._registered_on: RobustModule | None = None

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The base loss for logits ``(N, K)`` and hard or soft targets."""
        raise NotImplementedError

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Put :meth:`loss` in place of cross-entropy when fitting starts."""
        if stage == "fit":
            module = require_robust_module(self, pl_module)
            module.replace_base_loss(self.name, self.loss)
            self._registered_on = module

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Restore cross-entropy."""
        if self._registered_on is not None:
            self._registered_on.unregister(self.name)
            self._registered_on = None
