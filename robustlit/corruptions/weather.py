"""Weather corruptions: snow, frost (procedural), fog (plasma fractal) and spatter."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustlit.corruptions._ops import (
    SampleStreams,
    clipped_zoom,
    filter2d,
    gaussian_blur,
    motion_blur,
    to_gray,
)

# Per-channel (R, G, B) mean and standard deviation of the five frost photographs that ImageNet-C draws from
# (frost1.png to frost5.jpg of hendrycks/robustness), measured on the full images. Only these statistics ship
# with robustlit; the texture itself is generated (see frost_texture).
FROST_STATS = (
    ((0.305, 0.585, 0.650), (0.106, 0.065, 0.060)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.540, 0.599, 0.648), (0.112, 0.112, 0.117)),
    ((0.441, 0.484, 0.528), (0.174, 0.170, 0.163)),
)
WATER = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD = (63 / 255, 42 / 255, 20 / 255)
_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
_BOX3 = torch.full((3, 3), 1 / 9)


def plasma_fractal(streams: SampleStreams, size: int, decay: float) -> Tensor:
    """Diamond-square plasma fractals of ``size × size`` (a power of two), one per sample, scaled to [0, 1].

    Each level adds uniform noise of half-width ``wibble²`` (``wibble`` starts at 100 and is divided by ``decay``
    per level) to the mean of the four neighbours, with wrap-around, as in the reference fog.

    Example:
        >>> p = plasma_fractal(SampleStreams(torch.tensor([0, 1]), "cpu"), 32, 2.0)
        >>> p.shape, float(p.min()), float(p.max())
        (torch.Size([2, 32, 32]), 0.0, 1.0)
    """
    if size & (size - 1):
        raise ValueError(f"plasma_fractal size must be a power of two, got {size}")
    grid = torch.zeros(len(streams), size, size, device=streams.device)
    # one draw per sample for all levels (3 grids of (size / step)² points per level), consumed in order
    noise = streams.uniform((3 * sum(4**k for k in range(size.bit_length() - 1)),), -1.0, 1.0)
    used = 0

    def wiggle(count: int) -> Tensor:
        nonlocal used
        used += count
        return noise[:, used - count:used]

    step, wibble = size, 100.0
    while step >= 2:
        half, cells = step // 2, (size // step) ** 2
        corners = grid[:, ::step, ::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        grid[:, half::step, half::step] = squares / 4 + wibble**2 * wiggle(cells).view_as(squares)
        centres, corners = grid[:, half::step, half::step], grid[:, ::step, ::step]
        across = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        grid[:, ::step, half::step] = across / 4 + wibble**2 * wiggle(cells).view_as(across)
        down = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        grid[:, half::step, ::step] = down / 4 + wibble**2 * wiggle(cells).view_as(down)
        step, wibble = half, wibble / decay
    grid -= grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def _power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def fog(x: Tensor, params: tuple[float, float], streams: SampleStreams) -> Tensor:
    """Add a plasma fractal (``params`` = amount, decay) and rescale so the brightest value keeps its level."""
    amount, decay = params
    height, width = x.shape[-2:]
    plasma = plasma_fractal(streams, _power_of_two(max(height, width)), decay)[:, None, :height, :width]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + amount * plasma) * peak / (peak + amount)


def frost_texture(streams: SampleStreams, height: int, width: int) -> Tensor:
    """Procedural frost: ice needles over a frosted haze, with the colour statistics of a frost photograph.

    Sparse bright seeds are streaked along three random directions per sample (one-sided motion blurs, as
    ice needles grow from a nucleus) and laid over a plasma-fractal haze. The pattern is standardized and given
    the per-channel mean and standard deviation of one of the five ImageNet-C frost photographs, drawn per
    sample (:data:`FROST_STATS`), so the frost layer's brightness, tint and contrast follow the reference.

    Returns:
        ``(B, 3, height, width)`` textures in [0, 1].
    """
    side = min(height, width)
    haze = plasma_fractal(streams, _power_of_two(max(height, width)), 2.0)[:, None, :height, :width]
    seeds = (streams.uniform((1, height, width)) < 0.03).float() * streams.uniform((1, height, width))
    length = max(2.0, 0.08 * side)
    angles = streams.uniform((3,), 0.0, 360.0)
    needles = torch.stack([motion_blur(seeds, length, length / 2, angles[:, k]) for k in range(3)]).amax(dim=0)
    needles = needles / needles.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    pattern = 0.6 * haze + needles
    pattern = (pattern - pattern.mean(dim=(2, 3), keepdim=True)) / pattern.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    stats = torch.tensor(FROST_STATS, device=streams.device)  # (5, 2, 3)
    choice = stats[streams.integers(0, len(FROST_STATS), (1,))[:, 0]]  # (B, 2, 3)
    mean, std = choice[:, 0, :, None, None], choice[:, 1, :, None, None]
    return (mean + std * pattern).clamp(0, 1)


def frost(x: Tensor, params: tuple[float, float], streams: SampleStreams) -> Tensor:
    """``image_weight · x + frost_weight · frost`` with a procedural frost texture (:func:`frost_texture`)."""
    image_weight, frost_weight = params
    return image_weight * x + frost_weight * frost_texture(streams, *x.shape[-2:])


def snow(x: Tensor, params: tuple[float, ...], streams: SampleStreams) -> Tensor:
    """Snow flakes streaked by motion blur over a brightened, greyed image (``params`` as the reference's 7-tuple).

    A normal layer (mean, std) is zoomed into its centre, thresholded, quantized to 8 bits, motion-blurred at an
    angle in [-135°, -45°), added twice (the second copy rotated by 180°).
    """
    mean, std, zoom, threshold, radius, sigma, weight = params
    height, width = x.shape[-2:]
    layer = streams.normal((1, height, width), mean, std)
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, 0.0, layer).clamp(0, 1)
    layer = torch.floor(layer * 255) / 255
    angles = streams.uniform((1,), -135.0, -45.0)[:, 0]
    layer = torch.round(motion_blur(layer, radius, sigma, angles) * 255) / 255
    x = weight * x + (1 - weight) * torch.maximum(x, to_gray(x) * 1.5 + 0.5)
    return x + layer + layer.flip(-2, -1)


def _distance_to(edges: Tensor, cap: int) -> Tensor:
    """Euclidean distance of every pixel to the nearest ``edges`` pixel, capped at ``cap`` (separable, exact)."""
    inf = float(cap * cap + 1)
    height, width = edges.shape[-2:]
    squared = torch.where(edges, 0.0, inf)
    rows = torch.full_like(squared, inf)
    for k in range(-cap, cap + 1):
        lo, hi = max(0, -k), min(width, width - k)
        if lo < hi:
            rows[..., lo:hi] = torch.minimum(rows[..., lo:hi], squared[..., lo + k:hi + k] + k * k)
    out = torch.full_like(squared, inf)
    for k in range(-cap, cap + 1):
        lo, hi = max(0, -k), min(height, height - k)
        if lo < hi:
            out[..., lo:hi, :] = torch.minimum(out[..., lo:hi, :], rows[..., lo + k:hi + k, :] + k * k)
    return out.sqrt().clamp(max=cap)


def _equalize(values: Tensor) -> Tensor:
    """OpenCV ``equalizeHist`` of integer images in [0, 255], per sample."""
    flat = values.flatten(1).long()
    hist = torch.zeros(flat.shape[0], 256, device=values.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=hist.dtype))
    cdf = hist.cumsum(1)
    first = (hist > 0).float().argmax(1, keepdim=True)
    below = cdf.gather(1, first)
    total = cdf[:, -1:]
    lut = torch.round((cdf - below) * 255 / (total - below).clamp_min(1)).clamp(0, 255)
    lut = torch.where(total == below, first.float().expand_as(lut), lut)
    return lut.gather(1, flat).view_as(values)


def spatter(x: Tensor, params: tuple[float, ...], streams: SampleStreams) -> Tensor:
    """Water drops (severities 1-3 at both sizes) or mud (4-5), as the reference ``spatter``.

    A smoothed normal layer is thresholded into blobs. Water: the blobs' distance to their outline (capped at
    20 px), histogram-equalized and embossed, shades pale-turquoise drops added to the image. The reference finds
    the outline with Canny and measures with OpenCV's 5 × 5 distance approximation; here the outline is the
    blobs' inner boundary and the distance is exact. Mud: the smoothed blob mask, cut below 0.8, blends in brown.
    """
    mean, std, sigma, threshold, strength, mud = params
    height, width = x.shape[-2:]
    layer = gaussian_blur(streams.normal((1, height, width), mean, std), sigma)
    layer = torch.where(layer < threshold, 0.0, layer)
    if mud:
        mask = gaussian_blur((layer > threshold).float(), strength)
        mask = torch.where(mask < 0.8, 0.0, mask)
        colour = torch.tensor(MUD, device=x.device).view(1, 3, 1, 1)
        return x * (1 - mask) + colour * mask
    level = torch.floor(layer.clamp(0, 1) * 255)
    inside = level > 0
    padded = torch.nn.functional.pad(inside.float(), (1, 1, 1, 1), mode="replicate")
    eroded = torch.stack([padded[..., 1:-1, :-2], padded[..., 1:-1, 2:], padded[..., :-2, 1:-1],
                          padded[..., 2:, 1:-1]]).amin(0) > 0
    dist = _distance_to(inside & ~eroded, 20)
    dist = torch.floor(filter2d(dist, _BOX3))
    dist = _equalize(dist)
    dist = torch.round(filter2d(dist, _EMBOSS)).clamp(0, 255)
    dist = torch.round(filter2d(dist, _BOX3))
    shade = level / 255 * dist
    shade = shade / shade.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) * strength
    colour = torch.tensor(WATER, device=x.device).view(1, 3, 1, 1)
    return x + shade * colour
