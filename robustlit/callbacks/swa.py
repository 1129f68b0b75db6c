"""SWA through Lightning's StochasticWeightAveraging, without its stale optimizer step in the BatchNorm epoch."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import StochasticWeightAveraging
from typing_extensions import override


class SWA(StochasticWeightAveraging):
    """Stochastic weight averaging: Lightning's callback, with the BatchNorm-update epoch made side-effect free.

    Reference: Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018.
    Lightning's callback averages the weights at the start of each SWA epoch and, for models with
    BatchNorm, adds one epoch that skips backward to recompute the statistics of the averaged weights.
    That epoch still ends with an optimizer step, which applies the gradient (and momentum) left over
    from the last real step to the averaged weights; this subclass clears the gradients when the epoch
    starts, so the step changes nothing and the result equals ``torch.optim.swa_utils``'s average followed
    by ``update_bn``. Works on any LightningModule; arguments are those of
    :class:`~lightning.pytorch.callbacks.StochasticWeightAveraging`.

    Example:
        >>> swa = SWA(swa_lrs=0.05, swa_epoch_start=0.75)
        >>> trainer = L.Trainer(callbacks=[swa], max_epochs=20)  # doctest: +SKIP
    """

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Average (Lightning), then drop stale gradients if this is the BatchNorm-update epoch."""
        super().on_train_epoch_start(trainer, pl_module)
        if trainer.fit_loop._skip_backward:
            for optimizer in trainer.optimizers:
                optimizer.zero_grad(set_to_none=True)
