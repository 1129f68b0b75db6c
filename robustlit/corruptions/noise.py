"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper) and speckle noise."""

from __future__ import annotations

from torch import Tensor

from robustlit.corruptions._ops import SampleStreams


def gaussian_noise(x: Tensor, sigma: float, streams: SampleStreams) -> Tensor:
    """Add N(0, σ²) noise to every value.

    Example:
        >>> import torch
        >>> out = gaussian_noise(torch.full((1, 3, 4, 4), 0.5), 0.1, SampleStreams(torch.tensor([0]), "cpu"))
        >>> out.shape
        torch.Size([1, 3, 4, 4])
    """
    return x + sigma * streams.normal(x.shape[1:])


def shot_noise(x: Tensor, rate: float, streams: SampleStreams) -> Tensor:
    """Photon noise: ``Poisson(x · rate) / rate``."""
    return streams.poisson(x * rate) / rate


def impulse_noise(x: Tensor, amount: float, streams: SampleStreams) -> Tensor:
    """Salt-and-pepper noise: each value becomes 0 or 1 (equally likely) with probability ``amount``."""
    flipped = streams.uniform(x.shape[1:]) < amount
    salt = (streams.uniform(x.shape[1:]) < 0.5).to(x.dtype)
    return x.where(~flipped, salt)


def speckle_noise(x: Tensor, sigma: float, streams: SampleStreams) -> Tensor:
    """Multiplicative noise: ``x + x · N(0, σ²)``."""
    return x + x * sigma * streams.normal(x.shape[1:])
