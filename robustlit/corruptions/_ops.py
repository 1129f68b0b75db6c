"""Shared building blocks: per-sample random streams, separable filter matrices, shifts and colour conversions."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY


class SampleStreams:
    """One ``torch.Generator`` per sample, seeded from the sample's own seed.

    A sample's draws depend only on its seed and on the sequence of calls, never on the batch it sits in.
    Dense noise comes from torch's generators rather than from :mod:`robustlit.rng`'s hash streams because they
    are about 15× faster on CPU; the per-sample seeds still come from :func:`robustlit.rng.sample_seeds`.
    On CUDA the generators are CUDA generators, so CPU and GPU give different (equally valid) noise.

    Example:
        >>> a = SampleStreams(torch.tensor([1, 2]), "cpu").normal((3,))
        >>> b = SampleStreams(torch.tensor([2]), "cpu").normal((3,))
        >>> torch.equal(a[1], b[0])
        True
    """

    def __init__(self, seeds: Tensor, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._generators = []
        for seed in seeds.tolist():
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed))
            self._generators.append(generator)

    def __len__(self) -> int:
        return len(self._generators)

    def normal(self, shape: Sequence[int], mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Normal draws of shape ``(B, *shape)``."""
        out = torch.empty((len(self), *shape), device=self.device)
        for row, generator in zip(out, self._generators, strict=True):
            row.normal_(mean, std, generator=generator)
        return out

    def uniform(self, shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> Tensor:
        """Uniform draws on ``[low, high)`` of shape ``(B, *shape)``."""
        out = torch.empty((len(self), *shape), device=self.device)
        for row, generator in zip(out, self._generators, strict=True):
            row.uniform_(low, high, generator=generator)
        return out

    def integers(self, low: int, high: int, shape: Sequence[int]) -> Tensor:
        """Integers on ``[low, high)`` of shape ``(B, *shape)``."""
        out = torch.empty((len(self), *shape), device=self.device, dtype=torch.int64)
        for row, generator in zip(out, self._generators, strict=True):
            row.random_(low, high, generator=generator)
        return out

    def poisson(self, rates: Tensor) -> Tensor:
        """Poisson draws with the given per-element rates (first dimension = the batch)."""
        return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rates, self._generators, strict=True)])


def fold_index(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map out-of-range indices into ``[0, size)`` for the border ``mode``.

    ``nearest`` repeats the edge pixel; ``reflect`` mirrors about the edge (``d c b a | a b c d``, scipy's
    "reflect"); ``mirror`` mirrors about the edge pixel (``d c b | a b c d``, OpenCV's REFLECT_101).

    Example:
        >>> fold_index(np.array([-2, -1, 3, 4]), 3, "reflect").tolist()
        [1, 0, 2, 1]
    """
    if mode == "nearest" or size == 1:
        return np.clip(index, 0, size - 1)
    period = 2 * size if mode == "reflect" else 2 * size - 2
    folded = np.mod(index, period)
    top = 2 * size - 1 if mode == "reflect" else 2 * size - 2
    return np.where(folded >= size, top - folded, folded)


def kernel_matrix(size: int, weights: np.ndarray, mode: str) -> np.ndarray:
    """The ``size × size`` matrix of a centred 1-D correlation with ``weights`` under a border ``mode``."""
    radius = len(weights) // 2
    matrix = np.zeros((size, size))
    rows = np.arange(size)
    for offset, weight in zip(range(-radius, radius + 1), weights, strict=True):
        np.add.at(matrix, (rows, fold_index(rows + offset, size, mode)), weight)
    return matrix


@lru_cache(maxsize=256)
def _gaussian_np(size: int, sigma: float, mode: str, truncate: float) -> np.ndarray:
    if sigma <= 0:
        return np.eye(size)
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel_matrix(size, weights / weights.sum(), mode)


def gaussian_matrix(size: int, sigma: float, mode: str = "nearest", truncate: float = 4.0,
                    device: torch.device | str = "cpu") -> Tensor:
    """The matrix of scipy's ``gaussian_filter1d`` (σ, truncation and border as scipy); identity for σ = 0.

    Example:
        >>> m = gaussian_matrix(5, 1.0)
        >>> torch.allclose(m.sum(1), torch.ones(5, dtype=torch.float64))
        True
    """
    return torch.from_numpy(_gaussian_np(size, float(sigma), mode, float(truncate))).to(device)


def separable(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Apply a separable linear map: ``rows @ x @ cols.T`` over the last two dimensions."""
    dtype = x.dtype
    return (rows.to(dtype) @ x @ cols.to(dtype).T).to(dtype)


def gaussian_blur(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """skimage/scipy Gaussian smoothing of the last two dimensions (each channel on its own)."""
    if sigma <= 0:
        return x
    height, width = x.shape[-2:]
    return separable(x, gaussian_matrix(height, sigma, mode, truncate, x.device),
                     gaussian_matrix(width, sigma, mode, truncate, x.device))


@lru_cache(maxsize=64)
def pil_box_matrix(in_size: int, out_size: int) -> Tensor:
    """Pillow's BOX resampling from ``in_size`` to ``out_size`` pixels as a matrix (its exact weights).

    Example:
        >>> pil_box_matrix(4, 2).tolist()
        [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    matrix = np.zeros((out_size, in_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = (np.arange(lo, hi) - center + 0.5) / filter_scale
        weights = ((taps > -0.5) & (taps <= 0.5)).astype(float)
        matrix[out, lo:hi] = weights / weights.sum()
    return torch.from_numpy(matrix)


def clipped_zoom(x: Tensor, zoom: float) -> Tensor:
    """Zoom into the centre by ``zoom``: the reference ``clipped_zoom`` helper on ``(B, C, H, W)``.

    Crops the central ``ceil(side / zoom)`` pixels, resizes them to ``round(crop · zoom)`` by linear
    interpolation with the end points aligned (scipy ``zoom``, order 1), and trims back to the centre.

    Example:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> torch.equal(clipped_zoom(x, 1.0), x)
        True
    """
    height, width = x.shape[-2:]
    crop_h, crop_w = math.ceil(height / zoom), math.ceil(width / zoom)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    out_h, out_w = int(round(crop_h * zoom)), int(round(crop_w * zoom))
    crop = x[..., top:top + crop_h, left:left + crop_w]
    if (out_h, out_w) != (crop_h, crop_w):
        crop = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    trim_h, trim_w = (out_h - height) // 2, (out_w - width) // 2
    return crop[..., trim_h:trim_h + height, trim_w:trim_w + width]


def _clipped_zoom_1d(size: int, zoom: float) -> np.ndarray:
    """The 1-D map of :func:`clipped_zoom` as a ``size × size`` matrix (at most two taps per row)."""
    crop = math.ceil(size / zoom)
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    coords = np.arange(out) * ((crop - 1) / (out - 1) if out > 1 else 0.0)
    low = np.floor(coords).astype(int).clip(0, crop - 1)
    frac = coords - low
    zoomed = np.zeros((out, size))
    np.add.at(zoomed, (np.arange(out), top + low), 1 - frac)
    np.add.at(zoomed, (np.arange(out), top + np.minimum(low + 1, crop - 1)), frac)
    trim = (out - size) // 2
    return zoomed[trim:trim + size]


@lru_cache(maxsize=16)
def zoom_blur_operator(height: int, width: int, zooms: tuple[float, ...]) -> Tensor:
    """``(1 + Σ_z Z_z ⊗ Z_z) / (1 + len(zooms))`` on flattened images, as a sparse CSR matrix.

    Zoom blur is linear and every zoom moves pixels by only a few positions, so the summed operator has a few
    dozen non-zeros per row: one sparse product replaces one interpolation per zoom factor.

    Example:
        >>> op = zoom_blur_operator(8, 8, (1.0,))
        >>> torch.allclose(op.to_dense(), torch.eye(64))
        True
    """
    from scipy import sparse

    total = sparse.identity(height * width, format="csr")
    for zoom in zooms:
        rows = sparse.csr_matrix(_clipped_zoom_1d(height, zoom))
        cols = sparse.csr_matrix(_clipped_zoom_1d(width, zoom))
        total = total + sparse.kron(rows, cols, format="csr")
    total = (total / (len(zooms) + 1)).tocsr().astype(np.float32)
    total.sort_indices()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(torch.from_numpy(total.indptr.astype(np.int64)),
                                       torch.from_numpy(total.indices.astype(np.int64)),
                                       torch.from_numpy(total.data), size=total.shape, check_invariants=False)


def shift_sum(x: Tensor, weights: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """``Σ_i w_i · x(y + dy_i, x + dx_i)`` with edge pixels repeated outside the image.

    Args:
        x: ``(B, C, H, W)``.
        weights: ``(K,)`` tap weights.
        dy: ``(B, K)`` integer row offsets, one set per sample.
        dx: ``(B, K)`` integer column offsets.
    """
    batch, channels, height, width = x.shape
    out = torch.zeros_like(x)
    if x.is_cuda:  # one gather per tap for the whole batch: few kernel launches
        rows, cols = torch.arange(height, device=x.device), torch.arange(width, device=x.device)
        for tap in range(weights.shape[0]):
            row_index = (rows[None, :] + dy[:, tap, None]).clamp(0, height - 1)
            col_index = (cols[None, :] + dx[:, tap, None]).clamp(0, width - 1)
            shifted = x.gather(2, row_index[:, None, :, None].expand(batch, channels, height, width))
            out += weights[tap] * shifted.gather(3, col_index[:, None, None, :].expand(batch, channels, height, width))
        return out
    pad_y, pad_x = int(dy.abs().max()), int(dx.abs().max())
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="replicate") if pad_x or pad_y else x
    taps = weights.tolist()
    # On CPU, slicing one sample at a time beats gathering with per-sample indices by 2-5x.
    for sample, (rows, cols) in enumerate(zip(dy.tolist(), dx.tolist(), strict=True)):
        target, source = out[sample], padded[sample]
        for weight, row, col in zip(taps, rows, cols, strict=True):
            top, left = pad_y + row, pad_x + col
            target.add_(source[:, top:top + height, left:left + width], alpha=weight)
    return out


def motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's ``MotionBlurImage``: a one-sided Gaussian streak of ``2·ceil(radius) + 1`` taps per sample.

    Args:
        x: ``(B, C, H, W)`` images.
        radius: Streak radius in pixels.
        sigma: σ of the one-sided Gaussian weights.
        angles: ``(B,)`` streak angles in degrees.
    """
    width = 2 * math.ceil(radius) + 1
    taps = torch.arange(width, device=x.device, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(x.dtype)
    theta = torch.deg2rad(angles.to(torch.float64))[:, None]
    dy = torch.ceil(taps[None, :] * torch.sin(theta) - 0.5).to(torch.int64)
    dx = torch.ceil(taps[None, :] * torch.cos(theta) - 0.5).to(torch.int64)
    return shift_sum(x, weights, dy, dx)


def to_gray(x: Tensor) -> Tensor:
    """``(B, 3, H, W)`` RGB to ``(B, 1, H, W)`` luma with OpenCV's RGB2GRAY weights."""
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def filter2d(x: Tensor, kernel: Tensor) -> Tensor:
    """OpenCV ``filter2D`` (correlation, REFLECT_101 border) of every channel with one odd-sized kernel."""
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape
    pad = (kw // 2, kw // 2, kh // 2, kh // 2)
    flat = x.reshape(batch * channels, 1, height, width)
    mode = "reflect" if max(kh, kw) // 2 < min(height, width) else "replicate"
    padded = F.pad(flat, pad, mode=mode)
    kernel = kernel.to(x)
    if kh * kw <= 49:
        return F.conv2d(padded, kernel[None, None]).reshape(batch, channels, height, width)
    # large kernels (defocus at ImageNet size): correlation through the FFT, as OpenCV does above 11 × 11
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded.float(), s=size) * torch.fft.rfft2(kernel.float().flip(0, 1), s=size)
    full = torch.fft.irfft2(spectrum, s=size)
    out = full[..., kh - 1:kh - 1 + height, kw - 1:kw - 1 + width].to(x.dtype)
    return out.reshape(batch, channels, height, width)
