"""RobustModule opt-in protocol and the ready-made RobustClassifier.

A Lightning callback cannot return a new loss, so a model opts in to regularizers by
mixing :class:`RobustModule` into its bases. Callbacks then register *batch transforms*
(mixup, adversarial examples, label smoothing …) and *loss terms* (TRADES KL, penalties …)
that :meth:`RobustModule.robust_step` applies around a single forward pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlit.errors import ConfigError
from robustlit.losses import soft_cross_entropy

__all__ = [
    "BatchTransform", "LossTerm", "RobustClassifier", "RobustModule", "StepContext", "unpack_batch", "unpack_groups",
]


@dataclass
class StepContext:
    """Everything a batch transform or loss term may read during one training step.

    Transforms run in ascending ``order`` and may replace ``inputs`` and ``targets``;
    loss terms run after the forward pass and can read ``logits``.

    Attributes:
        module: The LightningModule being trained (an ``nn.Module``; attack it directly).
        batch_idx: Index of the batch in the epoch.
        inputs: Current inputs, shape ``(N, C, H, W)`` in [0, 1].
        targets: Hard labels ``(N,)`` (int64) or soft targets ``(N, K)`` (float).
        clean_inputs: Inputs as they came from the data loader.
        clean_targets: Labels as they came from the data loader.
        logits: Model outputs on ``inputs``; ``None`` until the forward pass ran.
        extras: Scratch space shared by transforms and terms of the same step.
        groups: Group (or environment) id of each clean sample, ``(N,)`` int64, when the batch carries
            one (``(x, y, g)`` or a dict with a ``"group"`` key); ``None`` otherwise. Read by group DRO,
            IRM and V-REx.
        replay: True while an optimizer-level method re-runs this step on the same transformed batch
            (SAM's second pass, see :meth:`RobustModule.replay_step`); stateful terms must not update then.

    Example:
        >>> import torch
        >>> ctx = StepContext(module=torch.nn.Identity(), batch_idx=0,
        ...                   inputs=torch.zeros(2, 1, 4, 4), targets=torch.tensor([0, 1]))
        >>> ctx.clean_inputs.shape
        torch.Size([2, 1, 4, 4])
    """

    module: nn.Module
    batch_idx: int
    inputs: Tensor
    targets: Tensor
    clean_inputs: Tensor = None  # type: ignore[assignment]
    clean_targets: Tensor = None  # type: ignore[assignment]
    logits: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    groups: Tensor | None = None
    replay: bool = False

    def __post_init__(self) -> None:
        if self.clean_inputs is None:
            self.clean_inputs = self.inputs
        if self.clean_targets is None:
            self.clean_targets = self.targets

    @property
    def hard_targets(self) -> Tensor:
        """Class indices of ``targets`` (argmax for soft targets)."""
        return self.targets.argmax(dim=1) if self.targets.ndim == 2 else self.targets


BatchTransform = Callable[[StepContext], tuple[Tensor, Tensor]]
"""Maps a step context to new ``(inputs, targets)``."""

LossTerm = Callable[[StepContext], Tensor]
"""Maps a step context (with ``logits`` set) to a scalar loss added to the base loss."""


def unpack_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """Return ``(inputs, targets)`` from a ``(x, y, ...)`` sequence or an ``{"image", "label"}`` dict.

    Args:
        batch: A batch as produced by a DataLoader.

    Returns:
        The inputs and targets tensors.

    Raises:
        ConfigError: If the batch has neither layout.

    Example:
        >>> import torch
        >>> x, y = unpack_batch([torch.zeros(2, 3), torch.tensor([1, 0])])
        >>> y.tolist()
        [1, 0]
    """
    if isinstance(batch, Mapping) and "image" in batch and "label" in batch:
        return batch["image"], batch["label"]
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ConfigError(
        f"cannot read a batch of type {type(batch).__name__}; robustlit expects (inputs, targets) "
        "or a dict with 'image' and 'label' keys (override unpack_batch to support other layouts)"
    )


def unpack_groups(batch: Any) -> Tensor | None:
    """Return the group ids of a ``(x, y, g, ...)`` sequence or a dict with a ``"group"`` key, else ``None``.

    Example:
        >>> import torch
        >>> unpack_groups([torch.zeros(2, 3), torch.tensor([1, 0]), torch.tensor([3, 2])]).tolist()
        [3, 2]
        >>> unpack_groups([torch.zeros(2, 3), torch.tensor([1, 0])]) is None
        True
    """
    if isinstance(batch, Mapping):
        return batch.get("group")
    if isinstance(batch, list | tuple) and len(batch) >= 3 and isinstance(batch[2], Tensor):
        return batch[2]
    return None


@dataclass
class _Registration:
    fn: Callable[[StepContext], Any]
    order: int = 0
    weight: float = 1.0


class RobustModule:
    """Mixin that lets regularizer callbacks change a LightningModule's training step.

    Opt in with one line, by adding ``RobustModule`` to the bases. If your module defines no
    ``training_step``, the mixin's is used; if it does, return ``self.robust_step(batch, batch_idx)``
    from it. The base loss is :meth:`robust_loss` (cross-entropy that accepts hard or soft
    targets); override it for other objectives.

    Example:
        >>> import lightning as L, torch
        >>> class MyNet(RobustModule, L.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> model = MyNet()
        >>> model.register_loss_term("zero", lambda ctx: ctx.logits.sum() * 0)
        >>> out = model.robust_step((torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])), 0)
        >>> sorted(out)
        ['logits', 'loss']
    """

    def _robust_registry(self, kind: str) -> dict[str, _Registration]:
        registries = self.__dict__.setdefault("_robust_registries", {"transform": {}, "loss": {}})
        return registries.setdefault(kind, {})

    def register_batch_transform(self, name: str, transform: BatchTransform, order: int = 0) -> None:
        """Apply ``transform`` to every training batch before the forward pass.

        Args:
            name: Unique name; also used to unregister.
            transform: Callable mapping a :class:`StepContext` to ``(inputs, targets)``.
            order: Transforms run in ascending order (label smoothing 0, mixup 10, adversarial 20).

        Raises:
            ValueError: If ``name`` is already registered.
        """
        self._register("transform", name, _Registration(transform, order=order))

    def register_loss_term(self, name: str, term: LossTerm, weight: float = 1.0) -> None:
        """Add ``weight * term(ctx)`` to the loss and log it as ``train/reg/<name>``.

        Args:
            name: Unique name; also used to unregister and in the logged key.
            term: Callable mapping a :class:`StepContext` (with ``logits``) to a scalar tensor.
            weight: Multiplier applied to the term.

        Raises:
            ValueError: If ``name`` is already registered.
        """
        self._register("loss", name, _Registration(term, weight=weight))

    def replace_base_loss(self, name: str, loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        """Use ``loss(logits, targets)`` instead of cross-entropy as the base loss (focal, bi-tempered …).

        Args:
            name: Name of the replacement; ``unregister(name)`` restores cross-entropy.
            loss: Callable mapping logits ``(N, K)`` and hard ``(N,)`` or soft ``(N, K)`` targets to a scalar.

        Raises:
            ValueError: If another base loss is already in place; only one can be.

        Example:
            >>> import lightning as L, torch
            >>> class Net(RobustModule, L.LightningModule):
            ...     def forward(self, x):
            ...         return x
            >>> net = Net()
            >>> net.replace_base_loss("zero", lambda logits, targets: logits.sum() * 0)
            >>> float(net.robust_loss(torch.ones(2, 3), torch.tensor([0, 1])))
            0.0
        """
        registry = self._robust_registry("base")
        if registry:
            raise ValueError(
                f"base loss {next(iter(registry))!r} is already in place on {type(self).__name__}; "
                f"choose one base loss, not both it and {name!r}"
            )
        registry[name] = _Registration(loss)

    def unregister(self, name: str) -> None:
        """Remove a batch transform, loss term or base-loss replacement by name; unknown names are ignored."""
        for kind in ("transform", "loss", "base"):
            self._robust_registry(kind).pop(name, None)

    @property
    def registered_names(self) -> list[str]:
        """Names of all registered transforms (in run order), then loss terms, then a base-loss replacement."""
        transforms = sorted(self._robust_registry("transform").items(), key=lambda kv: kv[1].order)
        names = [name for name, _ in transforms]
        return names + list(self._robust_registry("loss")) + list(self._robust_registry("base"))

    def _register(self, kind: str, name: str, registration: _Registration) -> None:
        registry = self._robust_registry(kind)
        if name in registry:
            raise ValueError(f"a {kind} named {name!r} is already registered on {type(self).__name__}")
        registry[name] = registration

    def unpack_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Split a batch into ``(inputs, targets)``; override for custom batch layouts."""
        return unpack_batch(batch)

    def unpack_groups(self, batch: Any) -> Tensor | None:
        """Group ids of a batch (``None`` if it has none); override for custom batch layouts."""
        return unpack_groups(batch)

    @contextmanager
    def replay_step(self) -> Iterator[None]:
        """Within this block, :meth:`robust_step` re-runs the last step on the batch its transforms produced.

        Optimizer-level methods (SAM) need a second forward/backward on the *same* training batch at
        other weights: transforms are not re-drawn, ``ctx.replay`` is True and nothing is logged.

        Raises:
            RuntimeError: If no step ran yet.
        """
        last = self.__dict__.get("_robust_last_step")
        if last is None:
            raise RuntimeError(f"{type(self).__name__}.replay_step() needs a robust_step() to replay first")
        self.__dict__["_robust_replay"] = last
        try:
            yield
        finally:
            self.__dict__.pop("_robust_replay", None)

    def robust_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Base loss: cross-entropy for hard labels, soft cross-entropy for ``(N, K)`` targets.

        A loss set with :meth:`replace_base_loss` takes the place of cross-entropy.
        """
        for registration in self._robust_registry("base").values():
            return registration.fn(logits, targets)
        return soft_cross_entropy(logits, targets)

    def robust_step(self, batch: Any, batch_idx: int = 0) -> dict[str, Tensor]:
        """Run transforms → one forward → base loss + loss terms, log them, return the loss.

        Args:
            batch: The training batch.
            batch_idx: Its index in the epoch.

        Returns:
            ``{"loss": scalar, "logits": detached logits}``.
        """
        replayed = self.__dict__.get("_robust_replay")
        if replayed is not None:
            ctx = replace(replayed, extras=dict(replayed.extras), replay=True)
        else:
            inputs, targets = self.unpack_batch(batch)
            ctx = StepContext(module=self, batch_idx=batch_idx, inputs=inputs, targets=targets,  # type: ignore[arg-type]
                              groups=self.unpack_groups(batch))
            for registration in sorted(self._robust_registry("transform").values(), key=lambda r: r.order):
                ctx.inputs, ctx.targets = registration.fn(ctx)
            self.__dict__["_robust_last_step"] = replace(ctx, extras=dict(ctx.extras))
        ctx.logits = self(ctx.inputs)  # type: ignore[operator]
        base_loss = self.robust_loss(ctx.logits, ctx.targets)
        loss = base_loss
        batch_size = ctx.clean_inputs.shape[0]
        for name, registration in self._robust_registry("loss").items():
            value = registration.fn(ctx)
            loss = loss + registration.weight * value
            if not ctx.replay:
                self._log_if_attached(f"train/reg/{name}", value.detach(), batch_size)
        if ctx.replay:
            return {"loss": loss, "logits": ctx.logits.detach()}
        self._log_if_attached("train/loss", loss.detach(), batch_size, prog_bar=True)
        self._log_if_attached("train/loss_base", base_loss.detach(), batch_size)
        accuracy = (ctx.logits.argmax(dim=1) == ctx.hard_targets).float().mean()
        self._log_if_attached("train/acc", accuracy, batch_size, prog_bar=True)
        return {"loss": loss, "logits": ctx.logits.detach()}

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Default Lightning training step: :meth:`robust_step`."""
        return self.robust_step(batch, batch_idx)

    def _log_if_attached(self, key: str, value: Tensor, batch_size: int, prog_bar: bool = False) -> None:
        if getattr(self, "_trainer", None) is not None:
            self.log(key, value, batch_size=batch_size, prog_bar=prog_bar)  # type: ignore[attr-defined]


OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class RobustClassifier(RobustModule, L.LightningModule):
    """Image classifier whose backbone, optimizer and scheduler come from config.

    Args:
        model: An ``nn.Module`` mapping images in [0, 1] to logits, or a model spec dict for
            :func:`robustlit.models.build_model` (stored in the checkpoint so it can be rebuilt).
        num_classes: Number of classes.
        in_channels: Input channels (used when ``model`` is a spec).
        mean: Per-channel normalization mean used inside the model (spec only).
        std: Per-channel normalization std used inside the model (spec only).
        optimizer: Partial optimizer, called as ``optimizer(params)``; ``None`` for evaluation only.
        scheduler: Partial LR scheduler, called with the optimizer and the run's total number of
            optimizer steps (passed as ``total_steps`` or ``T_max``, whichever it takes); stepped per batch.

    Example:
        >>> from functools import partial
        >>> import torch
        >>> clf = RobustClassifier({"arch": "smallcnn", "width": 8, "checkpoint": None}, num_classes=10,
        ...                        in_channels=1, mean=(0.5,), std=(0.25,),
        ...                        optimizer=partial(torch.optim.SGD, lr=0.1))
        >>> clf(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, Any],
        num_classes: int,
        in_channels: int = 3,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        if isinstance(model, nn.Module):
            self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
            self.model = model
        else:
            from robustlit.models import build_model

            model = dict(model)  # a plain dict, so checkpoints do not pickle OmegaConf objects
            self.save_hyperparameters(ignore=["optimizer", "scheduler"])
            self.model = build_model(model, num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
        self.num_classes = num_classes
        self._optimizer_factory = optimizer
        self._scheduler_factory = scheduler

    def forward(self, x: Tensor) -> Tensor:
        """Logits of images ``x`` in [0, 1]."""
        return self.model(x)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Log ``val/loss`` and ``val/acc``."""
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Log ``test/loss`` and ``test/acc``."""
        self._evaluate(batch, "test")

    def _evaluate(self, batch: Any, stage: str) -> None:
        inputs, targets = self.unpack_batch(batch)
        logits = self(inputs)
        batch_size = inputs.shape[0]
        self.log(f"{stage}/loss", F.cross_entropy(logits, targets), batch_size=batch_size)
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
        self.log(f"{stage}/acc", accuracy, batch_size=batch_size, prog_bar=True)

    def configure_optimizers(self) -> Any:
        """Build the optimizer (and per-step scheduler) from the factories given at construction."""
        if self._optimizer_factory is None:
            raise ConfigError("RobustClassifier was built without an optimizer; pass optimizer=... to train")
        optimizer = self._optimizer_factory(self.parameters())
        if self._scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self._scheduler_factory(optimizer, **_schedule_length(self._scheduler_factory, total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _schedule_length(factory: SchedulerFactory, total_steps: int) -> dict[str, int]:
    """Name the schedule-length argument the way ``factory`` expects it."""
    parameters = inspect.signature(factory).parameters
    for name in ("total_steps", "T_max", "total_iters"):
        if name in parameters:
            return {name: total_steps}
    return {}
