"""Digital corruptions: brightness, contrast, saturation, elastic transform, pixelation and JPEG compression."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from robustlit.corruptions._ops import SampleStreams, gaussian_blur, pil_box_matrix, separable


def brightness(x: Tensor, shift: float, streams: SampleStreams | None = None) -> Tensor:
    """Add ``shift`` to the HSV value channel (clipped at 1), keeping hue and saturation.

    With hue and saturation fixed, every RGB channel is proportional to the value ``V = max(R, G, B)``, so the
    HSV round trip is a per-pixel rescaling (black pixels become grey).

    Example:
        >>> brightness(torch.tensor([[[[0.2]], [[0.4]], [[0.0]]]]), 0.1).flatten().tolist()
        [0.25, 0.5, 0.0]
    """
    value = x.amax(dim=1, keepdim=True)
    target = (value + shift).clamp(max=1)
    return torch.where(value > 0, x * target / value.clamp_min(1e-12), target.expand_as(x))


def contrast(x: Tensor, factor: float, streams: SampleStreams | None = None) -> Tensor:
    """Scale each channel's deviation from its mean over the image by ``factor``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


def saturate(x: Tensor, params: tuple[float, float], streams: SampleStreams | None = None) -> Tensor:
    """Set the HSV saturation to ``S · a + b`` (clipped to [0, 1]), keeping hue and value.

    Grey pixels have hue 0 in skimage's ``rgb2hsv``, so a positive offset ``b`` tints them red, as in the
    reference.

    Example:
        >>> saturate(torch.tensor([[[[0.5]], [[0.5]], [[0.5]]]]), (2.0, 0.2)).flatten().tolist()
        [0.5, 0.4000000059604645, 0.4000000059604645]
    """
    factor, offset = params
    value = x.amax(dim=1, keepdim=True)
    spread = value - x.amin(dim=1, keepdim=True)
    sat = torch.where(value > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    new_sat = (sat * factor + offset).clamp(0, 1)
    coloured = value - (value - x) * new_sat / sat.clamp_min(1e-12)
    low = value * (1 - new_sat)
    grey = torch.cat([value, low, low], dim=1)
    return torch.where(sat > 0, coloured, grey)


def pixelate(x: Tensor, factor: float, streams: SampleStreams | None = None) -> Tensor:
    """Downsample by ``factor`` and back up, both with Pillow's BOX filter (its exact weights).

    The released CIFAR-10-C and ImageNet-C scripts use BOX both ways; the ``imagecorruptions`` package
    upsamples with NEAREST instead.
    """
    height, width = x.shape[-2:]
    small_h, small_w = int(height * factor), int(width * factor)
    down = separable(x, pil_box_matrix(height, small_h).to(x.device), pil_box_matrix(width, small_w).to(x.device))
    return separable(down, pil_box_matrix(small_h, height).to(x.device), pil_box_matrix(small_w, width).to(x.device))


def jpeg_compression(x: Tensor, quality: int, streams: SampleStreams | None = None) -> Tensor:
    """Encode as JPEG at ``quality`` and decode, with libjpeg through torchvision (on CPU, for every device)."""
    images = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to TorchCodec; same libjpeg
        decoded = decode_jpeg(encode_jpeg(list(images), quality=int(quality)))
    return torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255


def _affine_sources(x: Tensor, jitter: float, streams: SampleStreams) -> Tensor:
    """Source coordinates (x, y) of every output pixel under the reference's random affine map, ``(B, H, W, 2)``."""
    batch, _, height, width = x.shape
    cx, cy, size = float(width // 2), float(height // 2), float(min(height, width) // 3)
    anchors = torch.tensor([[cx + size, cy + size], [cx + size, cy - size], [cx - size, cy - size]],
                           device=x.device, dtype=torch.float64)
    moved = anchors + streams.uniform((3, 2), -jitter, jitter).to(torch.float64)
    ones = torch.ones(3, 1, device=x.device, dtype=torch.float64)
    forward = torch.linalg.solve(torch.cat([anchors, ones], 1).expand(batch, 3, 3), moved)  # (B, 3, 2): p·A + t
    (a, b), (c, d) = forward[:, 0].unbind(1), forward[:, 1].unbind(1)
    det = a * d - b * c
    inverse = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / det[:, None, None]
    ys, xs = torch.meshgrid(torch.arange(height, device=x.device, dtype=torch.float64),
                            torch.arange(width, device=x.device, dtype=torch.float64), indexing="ij")
    points = torch.stack([xs, ys], -1).view(1, -1, 2) - forward[:, 2][:, None, :]
    return (points @ inverse).view(batch, height, width, 2)


def elastic_transform(x: Tensor, params: tuple[float, float, float], streams: SampleStreams) -> Tensor:
    """Random affine warp, then a smooth random displacement field (``params`` = α, σ, affine jitter).

    As in the reference: the affine map moves three anchor points by up to ``jitter`` pixels (bilinear, mirrored
    borders); the displacement field is uniform noise on [-1, 1] smoothed by a Gaussian of σ (truncated at 3σ,
    reflected borders) and scaled by α, sampled bilinearly with reflected borders.
    """
    alpha, sigma, jitter = params
    batch, _, height, width = x.shape
    sources = _affine_sources(x, jitter, streams)
    grid = torch.stack([2 * sources[..., 0] / max(width - 1, 1) - 1, 2 * sources[..., 1] / max(height - 1, 1) - 1], -1)
    warped = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=True)
    dx = gaussian_blur(streams.uniform((height, width), -1.0, 1.0), sigma, "reflect", 3.0) * alpha
    dy = gaussian_blur(streams.uniform((height, width), -1.0, 1.0), sigma, "reflect", 3.0) * alpha
    ys, xs = torch.meshgrid(torch.arange(height, device=x.device, dtype=x.dtype),
                            torch.arange(width, device=x.device, dtype=x.dtype), indexing="ij")
    grid = torch.stack([(2 * (xs + dx) + 1) / width - 1, (2 * (ys + dy) + 1) / height - 1], -1)
    return F.grid_sample(warped, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
