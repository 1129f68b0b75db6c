"""Building blocks shared by the model architectures."""

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel standardisation ``(x - mean) / std`` for inputs in [0, 1].

    Models put this first so that attacks, corruptions and ε all work in input units.
    ``mean`` and ``std`` are buffers shaped ``(1, C, 1, 1)``, so they are saved in the
    state_dict and follow the model across devices.

    Args:
        mean: One value per input channel.
        std: One positive value per input channel.
        channels: If given, the number of input channels ``mean`` and ``std`` must match.

    Raises:
        ValueError: If the lengths disagree or a ``std`` is not positive.

    Example:
        >>> norm = Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
        >>> norm(torch.ones(2, 3, 4, 4)).unique()
        tensor([2.])
        >>> tuple(norm.mean.shape)
        (1, 3, 1, 1)
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, channels: int | None = None) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(
                f"mean has {len(mean)} values but std has {len(std)}; give one of each per channel"
            )
        if channels is not None and len(mean) != channels:
            raise ValueError(
                f"mean and std have {len(mean)} values but in_channels={channels}; give one value per channel"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std={list(std)} must be positive")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise ``x`` of shape ``(N, C, H, W)``."""
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the statistics in ``print(model)``."""
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
