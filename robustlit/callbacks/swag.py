"""SWAG: collect a Gaussian posterior over the weights during training, average predictions over samples at test."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector
from torch.optim.swa_utils import update_bn
from typing_extensions import override

from robustlit.optim.swag import SWAGPosterior


class SWAG(L.Callback):
    """SWAG moments during training; Bayesian model averaging over sampled weights at test (optimizer level).

    Reference: Maddox et al., "A Simple Baseline for Bayesian Uncertainty in Deep Learning", NeurIPS 2019.
    From ``start_epoch`` on, the weights are collected into a :class:`~robustlit.optim.swag.SWAGPosterior`
    at the end of every epoch (or every ``collect_every_n_steps`` optimizer steps). When training ends
    the model takes the SWA mean, with BatchNorm statistics recomputed on the training data. With
    ``samples > 0``, the model's outputs during ``trainer.test`` become the log of the softmax averaged
    over that many sampled weight sets (each with its own BatchNorm statistics), so every evaluation
    suite (accuracy, calibration, attacks) sees the Bayesian model average. The moments are part of the
    callback's state, so they are saved in checkpoints and survive a resume. Works on any LightningModule.

    Args:
        start_epoch: First epoch collected (an int), or a fraction of ``max_epochs`` (a float in [0, 1)).
        collect_every_n_steps: Collect every this many optimizer steps instead of once per epoch.
        max_rank: Deviation columns kept (``K``; 20 in the paper).
        samples: Weight sets averaged at test time; 0 evaluates the SWA mean.
        scale: Covariance scale of the samples (0.5 in the paper).
        diagonal: Sample from the diagonal part only (SWAG-Diagonal).
        seed: Seed of the weight samples.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[SWAG(start_epoch=0.5, samples=10)], max_epochs=20)  # doctest: +SKIP
    """

    def __init__(self, start_epoch: int | float = 0.75, collect_every_n_steps: int | None = None, max_rank: int = 20,
                 samples: int = 0, scale: float = 0.5, diagonal: bool = False, seed: int = 0) -> None:
        if isinstance(start_epoch, float) and not 0 <= start_epoch < 1:
            raise MisconfigurationException(f"SWAG start_epoch={start_epoch}: give an int or a fraction in [0, 1)")
        if isinstance(start_epoch, int) and start_epoch < 0:
            raise MisconfigurationException(f"SWAG needs start_epoch >= 0, got {start_epoch}")
        if collect_every_n_steps is not None and collect_every_n_steps < 1:
            raise MisconfigurationException(f"SWAG needs collect_every_n_steps >= 1, got {collect_every_n_steps}")
        if max_rank < 0 or samples < 0 or scale <= 0:
            raise MisconfigurationException(
                f"SWAG needs max_rank >= 0, samples >= 0 and scale > 0; got {max_rank}, {samples}, {scale}"
            )
        self.start_epoch = start_epoch
        self.collect_every_n_steps = collect_every_n_steps
        self.max_rank = max_rank
        self.samples = samples
        self.scale = scale
        self.diagonal = diagonal
        self.seed = seed
        self.posterior: SWAGPosterior | None = None
        self._pending_state: dict[str, Any] | None = None
        self._ensemble: list[dict[str, Tensor]] = []
        self._hook: Any = None
        self._inside = False

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Create the posterior for the module's parameters."""
        if self.posterior is None:
            self.posterior = SWAGPosterior(sum(p.numel() for p in pl_module.parameters()), self.max_rank)
        if self._pending_state is not None:
            self.posterior.load_state_dict(self._pending_state)
            self._pending_state = None

    def _started(self, trainer: L.Trainer) -> bool:
        start = self.start_epoch
        if isinstance(start, float):
            start = int(start * (trainer.max_epochs or 1))
        return trainer.current_epoch >= start

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Collect every ``collect_every_n_steps`` optimizer steps (step mode)."""
        every = self.collect_every_n_steps
        if every and self._started(trainer) and trainer.global_step % every == 0:
            self._collect(pl_module)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Collect once per epoch (epoch mode)."""
        if not self.collect_every_n_steps and self._started(trainer):
            self._collect(pl_module)

    def _collect(self, pl_module: L.LightningModule) -> None:
        assert self.posterior is not None
        self.posterior.collect(parameters_to_vector(pl_module.parameters()))

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Load the SWA mean and recompute BatchNorm statistics."""
        if self.posterior is None or self.posterior.n == 0:
            return
        self._load(pl_module, self.posterior.mean, trainer)

    @override
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample the weight sets and route the module's outputs through their average."""
        if not self.samples or self.posterior is None or self.posterior.n == 0:
            return
        generator = torch.Generator().manual_seed(self.seed)
        # normal tensors, not inference tensors: gradient-based suites differentiate through the samples
        with torch.inference_mode(False):
            current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            self._ensemble = []
            for _ in range(self.samples):
                self._load(pl_module, self.posterior.sample(generator, self.scale, self.diagonal), trainer)
                self._ensemble.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})
            pl_module.load_state_dict(current)
        self._hook = pl_module.register_forward_hook(self._average_over_samples)

    @override
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the module's own forward."""
        if self._hook is not None:
            self._hook.remove()
            self._hook, self._ensemble = None, []

    def _average_over_samples(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor | None:
        if self._inside:
            return None
        self._inside = True
        try:
            probabilities = torch.stack([
                functional_call(module, state, args).float().softmax(dim=-1) for state in self._ensemble
            ]).mean(dim=0)
        finally:
            self._inside = False
        return probabilities.clamp_min(1e-12).log().to(output.dtype)

    def _load(self, pl_module: L.LightningModule, vector: Tensor, trainer: L.Trainer) -> None:
        """Put ``vector`` into the parameters and recompute BatchNorm statistics on the training data."""
        start = 0
        with torch.no_grad():
            for parameter in pl_module.parameters():
                count = parameter.numel()
                parameter.copy_(vector[start : start + count].view_as(parameter))
                start += count
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in pl_module.modules())
        loader = _train_loader(trainer)
        if has_bn and loader is not None:
            was_training = pl_module.training
            with torch.inference_mode(False), torch.no_grad():
                update_bn(_cloned_batches(loader), pl_module, device=pl_module.device)
            pl_module.train(was_training)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The posterior's moments."""
        return {"posterior": None if self.posterior is None else self.posterior.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the moments (applied in ``setup`` if the posterior does not exist yet)."""
        state = state_dict.get("posterior")
        if state is None:
            return
        if self.posterior is None:
            self._pending_state = state
        else:
            self.posterior.load_state_dict(state)


def _train_loader(trainer: L.Trainer) -> Any:
    """The training loader, from the fit loop or from the datamodule."""
    loader = getattr(trainer, "train_dataloader", None)
    if loader is None and getattr(trainer, "datamodule", None) is not None:
        loader = trainer.datamodule.train_dataloader()
    return loader


def _cloned_batches(loader: Any) -> Any:
    """The loader's inputs as normal tensors (a test loop yields inference tensors)."""
    for batch in loader:
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        yield inputs.clone()
