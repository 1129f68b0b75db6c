"""Helpers shared by regularizers that run extra forward passes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Leave BatchNorm running statistics unchanged by the passes inside, so synthetic inputs leave no trace.

    The passes still normalize with batch statistics in training mode, as the regularizers' papers do
    (VAT's ``update_batch_stats=False``). The running averages are frozen by a momentum of 0 rather
    than restored afterwards: the training forward pass saved them for its backward pass, and
    writing to them would invalidate that.

    Example:
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> with frozen_batchnorm_statistics(bn):
        ...     _ = bn(torch.randn(8, 2) + 5)
        >>> bn.running_mean.tolist(), int(bn.num_batches_tracked), bn.momentum
        ([0.0, 0.0], 0, 0.1)
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for module in norms:
        module.momentum = 0.0
    try:
        yield model
    finally:
        with torch.no_grad():
            for module, (momentum, count) in zip(norms, saved, strict=True):
                module.momentum = momentum
                if count is not None:
                    module.num_batches_tracked.copy_(count)
