"""Base class of the evaluation suites: callbacks that measure a model on test batches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from robustlit.attacks import eval_mode
from robustlit.module import unpack_batch
from robustlit.reporting.schema import Artifact, Metric

STAGES = ("test", "validate")


class EvaluationSuite(L.Callback):
    """Measure the model on every test (or validation) batch and report metrics at epoch end.

    Works on any LightningModule whose forward maps images in [0, 1] to logits; it needs nothing
    from the model's own ``test_step``. Gradient-based suites run inside
    ``torch.inference_mode(False)``, so users never have to set ``Trainer(inference_mode=False)``.
    Samples are numbered by their position in the (unshuffled) loader; these ids seed per-sample
    noise, so results do not depend on the batch size.

    Subclasses set :attr:`suite` and implement :meth:`reset`, :meth:`update` and :meth:`compute`.
    Per-sample results go through :meth:`store` and come back, ordered by sample id, from
    :meth:`stored`; under DDP these are gathered from every rank, so a suite that keeps its
    state this way reports the same numbers as a single-process run.

    Args:
        limit: Only evaluate the first ``limit`` samples (``None``: all of them).
        stages: Loops to run in: ``"test"`` and/or ``"validate"`` (validation runs during fit too).

    Example:
        >>> class Count(EvaluationSuite):
        ...     suite = "count"
        ...     def reset(self):
        ...         self.n = 0
        ...     def update(self, model, x, y, sample_ids):
        ...         self.n += len(y)
        ...     def compute(self):
        ...         return [Metric(self.suite, "n", self.n)]
        >>> Count(limit=100).limit
        100
    """

    suite: str = "suite"

    def __init__(self, limit: int | None = None, stages: tuple[str, ...] | list[str] = ("test",)) -> None:
        if limit is not None and limit < 1:
            raise MisconfigurationException(f"{type(self).__name__} limit must be positive or null, got {limit}")
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise MisconfigurationException(
                f"{type(self).__name__} stages {sorted(unknown)} are unknown; choose from {', '.join(STAGES)}"
            )
        self.limit = limit
        self.stages = tuple(stages)
        self.results: list[Metric] = []
        self.seconds = 0.0
        self._offset = 0
        self._stored: dict[str, list[tuple[Tensor, Tensor]]] = {}

    def store(self, name: str, values: Tensor, sample_ids: Tensor) -> None:
        """Keep per-sample values (first dimension = the batch) for :meth:`compute`.

        Example:
            >>> suite = EvaluationSuite()
            >>> suite.store("correct", torch.tensor([True, False]), torch.tensor([3, 1]))
            >>> suite.stored("correct")
            tensor([False,  True])
        """
        if values.shape[0] != sample_ids.shape[0]:
            raise ValueError(f"store({name!r}): {values.shape[0]} values for {sample_ids.shape[0]} sample ids")
        self._stored.setdefault(name, []).append((sample_ids.detach().cpu(), values.detach().cpu()))

    def stored(self, name: str) -> Tensor:
        """Everything stored under ``name``, one row per sample, ordered by sample id.

        A sample stored twice (as the padding of a distributed sampler does) counts once.
        """
        chunks = self._stored.get(name)
        if not chunks:
            raise KeyError(f"{type(self).__name__} stored nothing under {name!r}")
        ids = torch.cat([chunk_ids for chunk_ids, _ in chunks])
        values = torch.cat([chunk_values for _, chunk_values in chunks])
        return values[_first_occurrence(ids)]

    def reset(self) -> None:
        """Clear the accumulated state before an epoch."""
        raise NotImplementedError

    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Accumulate statistics for one batch (gradients are enabled)."""
        raise NotImplementedError

    def compute(self) -> list[Metric]:
        """Metrics of everything seen since :meth:`reset`."""
        raise NotImplementedError

    def write_artifacts(self, output_dir: Path) -> list[Artifact]:
        """Write this suite's own files (plots, tables) into ``output_dir`` after :meth:`compute`.

        Called once per run by the CLI before the report is written. The default writes nothing;
        suites whose figures cannot be rebuilt from metric rows (score histograms, ROC curves)
        override it.

        Example:
            >>> Count().write_artifacts(Path("runs/x"))  # doctest: +SKIP
            []
        """
        return []

    def evaluate(self, model: nn.Module, loader: Any) -> list[Metric]:
        """Run the suite over a data loader without a Trainer.

        Example:
            >>> metrics = CalibrationSuite().evaluate(model, test_loader)  # doctest: +SKIP
        """
        self._start(_sampler_order(loader))
        with eval_mode(model):
            for batch in loader:
                self._process(model, batch)
        return self._finish(None)

    def _start(self, order: Tensor | None = None) -> None:
        """Reset; ``order`` lists the dataset indices this process's loader yields (``None``: 0, 1, 2 …)."""
        self._stored = {}
        self._order = order
        self.reset()
        self._offset = 0
        self.seconds = 0.0

    def _process(self, model: nn.Module, batch: Any) -> None:
        x, y = unpack_batch(batch)
        start, self._offset = self._offset, self._offset + x.shape[0]
        positions = torch.arange(start, start + x.shape[0])
        ids = positions if self._order is None else self._order[positions]
        keep = torch.ones_like(ids, dtype=torch.bool) if self.limit is None else ids < self.limit
        if not bool(keep.any()):
            return
        began = time.perf_counter()
        with torch.inference_mode(False), torch.enable_grad():
            mask = keep.to(x.device)
            x, y = x[mask].clone(), y[mask].clone()
            self.update(model, x, y, ids[keep].to(x.device))
        self.seconds += time.perf_counter() - began

    def _finish(self, pl_module: L.LightningModule | None) -> list[Metric]:
        self._gather_stored()
        self.results = self.compute()
        if pl_module is not None and pl_module._trainer is not None:
            for metric in self.results:
                context = ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in metric.context.items())
                key = f"{metric.key}[{context}]" if context else metric.key
                pl_module.log(key, metric.value)
        return self.results

    def _gather_stored(self) -> None:
        """Under DDP, replace each process's stored values with every process's (ids keep them apart)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        if torch.distributed.get_world_size() < 2:
            return
        everyone: list[dict[str, list[tuple[Tensor, Tensor]]]] = [{} for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather_object(everyone, self._stored)
        names = sorted({name for stored in everyone for name in stored})
        self._stored = {name: [chunk for stored in everyone for chunk in stored.get(name, [])] for name in names}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reset before the test loop."""
        if "test" in self.stages:
            self._start(_sampler_order(first_loader(trainer.test_dataloaders)))

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        """Evaluate one test batch."""
        if "test" in self.stages:
            self._process(pl_module, batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compute and log the metrics."""
        if "test" in self.stages:
            self._finish(pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reset before the validation loop."""
        if "validate" in self.stages and not trainer.sanity_checking:
            self._start(_sampler_order(first_loader(trainer.val_dataloaders)))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """Evaluate one validation batch."""
        if "validate" in self.stages and not trainer.sanity_checking:
            self._process(pl_module, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compute and log the metrics."""
        if "validate" in self.stages and not trainer.sanity_checking:
            self._finish(pl_module)


def _first_occurrence(ids: Tensor) -> Tensor:
    """For each distinct id, in ascending order, the position of its first occurrence in ``ids``."""
    unique_ids, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((unique_ids.shape[0],), ids.shape[0], dtype=torch.long)
    return first.scatter_reduce(0, inverse, torch.arange(ids.shape[0]), reduce="amin")


def first_loader(loaders: Any) -> Any:
    """The first data loader of a Trainer's loader attribute (a loader, a list of them, or ``None``).

    Example:
        >>> first_loader([["batch"], ["other"]])
        ['batch']
    """
    if isinstance(loaders, list | tuple):
        return loaders[0] if loaders else None
    return loaders


def _sampler_order(loader: Any) -> Tensor | None:
    """The dataset indices a distributed loader yields on this process, in order (``None`` otherwise)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        return torch.tensor(list(iter(sampler)), dtype=torch.long)
    return None
