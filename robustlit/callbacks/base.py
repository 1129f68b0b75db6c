"""Base class for regularizers that rewrite the training batch."""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.attacks import NORMS, parse_eps
from robustlit.module import RobustModule, StepContext, unpack_batch


class BatchTransformCallback(L.Callback):
    """A callback that replaces each training batch's ``(inputs, targets)``.

    On a :class:`~robustlit.module.RobustModule` it registers :meth:`transform` with the module
    in ``setup("fit")`` and removes it in ``teardown``. On a plain LightningModule it rewrites
    the batch in place in ``on_train_batch_start``, which needs a list or dict batch (the default
    collate gives a list); soft targets then reach your loss, so use a loss that accepts class
    probabilities such as ``F.cross_entropy``.

    Subclasses implement :meth:`transform` and set :attr:`order`.

    Example:
        >>> class Identity(BatchTransformCallback):
        ...     order = 5
        ...     def transform(self, ctx):
        ...         return ctx.inputs, ctx.targets
        >>> Identity().name
        'identity'
    """

    order: int = 0
    """Position among batch transforms; lower runs first."""

    def __init__(self) -> None:
        self._registered_on: RobustModule | None = None

    @property
    def name(self) -> str:
        """Registration name: the class name in snake case."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in type(self).__name__).lstrip("_")

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Return the new ``(inputs, targets)`` for this step."""
        raise NotImplementedError

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Register with a RobustModule when fitting starts."""
        if stage == "fit" and isinstance(pl_module, RobustModule):
            pl_module.register_batch_transform(self.name, self.transform, order=self.order)
            self._registered_on = pl_module

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Unregister, so the module trains plainly if reused without this callback."""
        if self._registered_on is not None:
            self._registered_on.unregister(self.name)
            self._registered_on = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """On a plain LightningModule, rewrite the batch in place."""
        if self._registered_on is not None:
            return
        inputs, targets = unpack_batch(batch)
        ctx = StepContext(module=pl_module, batch_idx=batch_idx, inputs=inputs, targets=targets)
        new_inputs, new_targets = self.transform(ctx)
        if isinstance(batch, MutableMapping):
            batch["image"], batch["label"] = new_inputs, new_targets
        elif isinstance(batch, MutableSequence):
            batch[0], batch[1] = new_inputs, new_targets
        else:
            raise MisconfigurationException(
                f"{type(self).__name__} cannot rewrite a {type(batch).__name__} batch of a plain LightningModule; "
                "return lists or dicts from your collate_fn, or add RobustModule to your module's bases"
            )


def check_attack_settings(owner: str, eps: float | str, steps: int, norm: str) -> float:
    """Check a training-time attack's radius, step count and norm; returns ε as a number.

    Args:
        owner: The callback's name, for the error messages.
        eps: Radius, a number or a fraction such as ``"8/255"``.
        steps: Attack steps.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.

    Raises:
        MisconfigurationException: Naming the option that is out of range.

    Example:
        >>> round(check_attack_settings("AdversarialTraining", "8/255", 10, "Linf"), 4)
        0.0314
    """
    radius = parse_eps(eps)
    if radius <= 0:
        raise MisconfigurationException(f"{owner} needs eps > 0, got {radius}")
    if steps < 1:
        raise MisconfigurationException(f"{owner} needs steps >= 1, got {steps}")
    if norm not in NORMS:
        raise MisconfigurationException(f"{owner} norm={norm!r}; choose one of {', '.join(NORMS)}")
    return radius
