"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from robustlit.corruptions._ops import (
    SampleStreams,
    filter2d,
    gaussian_blur,
    kernel_matrix,
    motion_blur,
    zoom_blur_operator,
)


@lru_cache(maxsize=64)
def defocus_kernel(radius: float, alias_sigma: float) -> Tensor:
    """The anti-aliased disk of the reference ``disk()`` helper, trimmed to its non-zero support.

    A binary disk of ``radius`` on a grid of at least 17 × 17, normalised, then smoothed by a 3 × 3
    (5 × 5 above radius 8) Gaussian of σ = ``alias_sigma`` with mirrored borders.

    Example:
        >>> k = defocus_kernel(3, 0.1)
        >>> k.shape, round(float(k.sum()), 6)
        (torch.Size([9, 9]), 1.0)
    """
    half = 8 if radius <= 8 else math.ceil(radius)
    size = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(float)
    disk /= disk.sum()
    taps = np.arange(size) - (size - 1) / 2
    weights = np.exp(-(taps**2) / (2 * alias_sigma**2))
    smooth = kernel_matrix(len(grid), weights / weights.sum(), "mirror")
    kernel = smooth @ disk @ smooth.T
    support = np.nonzero(np.abs(kernel).max(axis=0) > 0)[0]
    keep = max(half - support.min(), support.max() - half)
    return torch.from_numpy(kernel[half - keep:half + keep + 1, half - keep:half + keep + 1])


def defocus_blur(x: Tensor, params: tuple[float, float], streams: SampleStreams | None = None) -> Tensor:
    """Convolve with an anti-aliased disk (``params`` = radius, alias σ), mirrored borders."""
    return filter2d(x, defocus_kernel(*params))


@lru_cache(maxsize=32)
def _glass_schedule(height: int, width: int, delta: int) -> list[tuple[Tensor, Tensor]]:
    """Groups of the reference's sequential pixel moves that can run at once without changing the result.

    Move ``(u, v)`` (``u`` rows and ``v`` columns into the reverse raster order) writes its own pixel and reads
    one at most ``delta`` rows and columns away, so two moves interact only if both offsets are at most
    ``delta``. Slot ``(delta + 1) · u + v`` keeps every interacting pair in its original order and never holds
    two interacting moves, so each slot is one vectorized gather. Returns, per slot, the flat pixel indices and
    the flat move indices ``u · (width - 2·delta) + v``.
    """
    rows, cols = height - 2 * delta, width - 2 * delta
    step = delta + 1
    schedule = []
    for slot in range(step * (rows - 1) + cols):
        u = np.arange(max(0, -(-(slot - cols + 1) // step)), min(rows - 1, slot // step) + 1)
        v = slot - step * u
        cells = (height - delta - u) * width + (width - delta - v)
        schedule.append((torch.from_numpy(cells), torch.from_numpy(u * cols + v)))
    return schedule


def shuffle_pixels(x: Tensor, moves: Tensor, delta: int) -> Tensor:
    """The reference's local pixel shuffling of glass blur, given its random moves.

    For each iteration, every pixel ``(h, w)`` with ``delta < h <= H - delta`` and ``delta < w <= W - delta``
    is visited in reverse raster order (last row first, right to left) and takes the *current* value of pixel
    ``(h + dy, w + dx)``. The reference writes this as a tuple swap on NumPy views, which copies the displaced
    pixel and leaves that pixel unchanged; the released CIFAR-10-C and ImageNet-C data were made that way, and
    so are these moves.

    Args:
        x: ``(B, C, H, W)`` images.
        moves: ``(B, iterations, H - 2·delta, W - 2·delta, 2)`` integer ``(dx, dy)`` per move, in
            ``[-delta, delta)``; entry ``[:, i, u, v]`` belongs to pixel ``(H - delta - u, W - delta - v)``.
        delta: Maximum displacement.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> moves = torch.zeros(1, 1, 2, 2, 2, dtype=torch.long)
        >>> moves[0, 0, 0, 0] = torch.tensor([-1, -1])  # pixel (3, 3) takes pixel (2, 2)
        >>> shuffle_pixels(x, moves, 1)[0, 0, 3, 3].item()
        10.0
    """
    batch, channels, height, width = x.shape
    source = torch.arange(height * width, device=x.device).repeat(batch, 1)
    offsets = (moves[..., 1] * width + moves[..., 0]).flatten(2)  # (B, iterations, rows * cols)
    schedule = [(cells.to(x.device), flat.to(x.device)) for cells, flat in _glass_schedule(height, width, delta)]
    for iteration in range(moves.shape[1]):
        step = offsets[:, iteration]
        for cells, flat in schedule:
            read = cells[None, :] + step.index_select(1, flat)
            source.index_copy_(1, cells, source.gather(1, read))
    flat_x = x.flatten(2).gather(2, source[:, None, :].expand(batch, channels, height * width))
    return flat_x.view(batch, channels, height, width)


def glass_blur(x: Tensor, params: tuple[float, int, int], streams: SampleStreams) -> Tensor:
    """Gaussian blur, local pixel shuffling, Gaussian blur again (``params`` = σ, max displacement δ, iterations).

    Faithful to the reference: the blurred image is quantized to 8 bits (truncating), then shuffled by
    :func:`shuffle_pixels` with moves drawn uniformly from ``[-δ, δ)``, then blurred again. The moves are
    sequential; the implementation keeps their exact order and dependencies while running the independent
    ones together (see :func:`_glass_schedule`).
    """
    sigma, delta, iterations = params
    height, width = x.shape[-2:]
    quantized = torch.floor(gaussian_blur(x, sigma).clamp(0, 1) * 255) / 255
    rows, cols = height - 2 * delta, width - 2 * delta
    if rows > 0 and cols > 0:
        quantized = shuffle_pixels(quantized, streams.integers(-delta, delta, (iterations, rows, cols, 2)), delta)
    return gaussian_blur(quantized, sigma)


def motion_blur_corruption(x: Tensor, params: tuple[float, float], streams: SampleStreams) -> Tensor:
    """ImageMagick-style motion blur (``params`` = radius, σ) at an angle drawn uniformly from [-45°, 45°)."""
    angles = streams.uniform((1,), -45.0, 45.0)[:, 0]
    return motion_blur(x, params[0], params[1], angles)


def zoom_blur(x: Tensor, zooms: tuple[float, ...], streams: SampleStreams | None = None) -> Tensor:
    """Average of the image and its centre zooms by each factor in ``zooms`` (the reference ``clipped_zoom``).

    Computed as one sparse product with the summed operator (:func:`zoom_blur_operator`).
    """
    batch, channels, height, width = x.shape
    operator = zoom_blur_operator(height, width, tuple(zooms)).to(x.device)
    flat = x.reshape(batch * channels, height * width).T.to(torch.float32)
    return (operator @ flat).T.reshape(batch, channels, height, width).to(x.dtype)


def gaussian_blur_corruption(x: Tensor, sigma: float, streams: SampleStreams | None = None) -> Tensor:
    """Gaussian blur of σ pixels (scipy/skimage kernel: truncated at 4σ, edge pixels repeated)."""
    return gaussian_blur(x, sigma)
