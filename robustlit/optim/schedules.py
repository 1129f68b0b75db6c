"""Learning-rate schedules with a linear warm-up (pure PyTorch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from robustlit.errors import ConfigError


@dataclass(frozen=True)
class WarmupCosine:
    """Multiplier of the base learning rate at step ``t``: linear warm-up, then cosine decay.

    ``start_factor + (1 − start_factor)·t/W`` for ``t < W``, then
    ``m + (1 − m)·½(1 + cos(π·(t − W)/(T − W)))`` up to ``T``, and ``m`` after it
    (Loshchilov & Hutter, "SGDR", ICLR 2017; Goyal et al., "Accurate, Large Minibatch SGD", 2017, for the warm-up).

    Attributes:
        total_steps: ``T``, the length of the run in optimizer steps.
        warmup_steps: ``W``.
        start_factor: Multiplier at step 0.
        min_factor: ``m``, the final multiplier.

    Example:
        >>> schedule = WarmupCosine(total_steps=10, warmup_steps=2, start_factor=0.0, min_factor=0.0)
        >>> [round(schedule(t), 3) for t in (0, 1, 2, 6, 10)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    total_steps: int
    warmup_steps: int
    start_factor: float = 0.0
    min_factor: float = 0.0

    def __call__(self, step: int) -> float:
        """The multiplier at optimizer step ``step``."""
        if step < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    start_factor: float = 0.0,
    min_factor: float = 0.0,
) -> LambdaLR:
    """Cosine decay after a linear warm-up over ``warmup_fraction`` of the run, stepped every batch.

    Args:
        optimizer: The optimizer whose learning rates are scaled.
        total_steps: Optimizer steps of the run (``RobustClassifier`` passes it).
        warmup_fraction: Share of the run spent warming up, in [0, 1).
        start_factor: Multiplier of the learning rate at the first step, in [0, 1].
        min_factor: Multiplier at the end, in [0, 1].

    Returns:
        A ``LambdaLR`` driven by :class:`WarmupCosine`.

    Raises:
        ConfigError: If an option is out of range.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> scheduler = warmup_cosine(opt, total_steps=100, warmup_fraction=0.1)
        >>> opt.param_groups[0]["lr"]
        0.0
    """
    if total_steps < 1:
        raise ConfigError(f"scheduler total_steps={total_steps} must be >= 1")
    if not 0 <= warmup_fraction < 1:
        raise ConfigError(f"scheduler.warmup_fraction={warmup_fraction} must lie in [0, 1)")
    for option, value in (("start_factor", start_factor), ("min_factor", min_factor)):
        if not 0 <= value <= 1:
            raise ConfigError(f"scheduler.{option}={value} must lie in [0, 1]")
    warmup = round(warmup_fraction * total_steps)
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup, start_factor, min_factor))
