"""Common corruptions of CIFAR-10-C / ImageNet-C (Hendrycks & Dietterich, ICLR 2019) as batched torch code.

``corrupt(x, name, severity)`` applies one of the 15 standard corruptions or the 4 extra ones to a batch of
images in [0, 1], on CPU or GPU. Parameters follow the reference tables at 32 px (CIFAR) and 224 px (ImageNet)
with a rule for other sizes (:mod:`robustlit.corruptions.params`). Random corruptions draw from one stream per
sample, seeded from ``(seed, sample id, corruption)``, so a sample's corruption does not depend on the batch it
is in; the same stream serves every severity, so a sample's noise pattern only grows with severity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robustlit.corruptions import blur, digital, noise, weather
from robustlit.corruptions._ops import LUMA, SampleStreams
from robustlit.corruptions.occlusion import occlude, occlusion_grid
from robustlit.corruptions.params import CORRUPTIONS, EXTRA, SEVERITIES, STANDARD, Setting, setting
from robustlit.errors import InputShapeError
from robustlit.rng import sample_seeds

_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur_corruption,
    "zoom_blur": blur.zoom_blur,
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
    "speckle_noise": noise.speckle_noise,
    "gaussian_blur": blur.gaussian_blur_corruption,
    "spatter": weather.spatter,
    "saturate": digital.saturate,
}
DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
                 "gaussian_blur", "saturate")
_STREAM_BASE = 0xC0  # keeps corruption streams apart from attack streams that use small stream numbers


def corrupt(x: Tensor, name: str, severity: int, *, seed: int = 0, sample_ids: Tensor | None = None) -> Tensor:
    """Apply corruption ``name`` at ``severity`` to a batch of images.

    Args:
        x: ``(B, C, H, W)`` images in [0, 1] with C = 1 or 3, on any device. Grey images are corrupted as
            RGB and converted back with BT.601 luma weights.
        name: One of :data:`CORRUPTIONS`.
        severity: 1 (mild) to 5 (strong).
        seed: Run seed of the per-sample random streams.
        sample_ids: ``(B,)`` stable ids of the samples (e.g. their test-set index); defaults to ``0 .. B-1``.
            A sample's corruption depends only on ``(seed, id, name)`` and the severity.

    Returns:
        The corrupted images, same shape, dtype and device, clipped to [0, 1] (not quantized to 8 bits).

    Raises:
        ConfigError: For an unknown name or a severity outside 1..5.
        InputShapeError: If ``x`` is not ``(B, 1 or 3, H, W)`` or ``sample_ids`` does not have B entries.
        ValueError: If ``x`` has values outside [0, 1].

    Example:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> y = corrupt(x, "gaussian_noise", 3, seed=0, sample_ids=torch.arange(4))
        >>> y.shape, bool(y.min() >= 0), bool(y.max() <= 1)
        (torch.Size([4, 3, 32, 32]), True, True)
        >>> torch.equal(corrupt(x[2:], "gaussian_noise", 3, sample_ids=torch.arange(2, 4)), y[2:])
        True
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputShapeError(f"corrupt() needs images of shape (B, 1 or 3, H, W), got {tuple(x.shape)}")
    config = setting(name, severity, x.shape[-2], x.shape[-1])
    if x.numel():
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(f"corrupt() needs images in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    if sample_ids is None:
        sample_ids = torch.arange(x.shape[0])
    if sample_ids.ndim != 1 or sample_ids.shape[0] != x.shape[0]:
        raise InputShapeError(f"corrupt() got {tuple(sample_ids.shape)} sample_ids for a batch of {x.shape[0]}")
    if x.shape[0] == 0:
        return x.clone()
    streams = None
    if name not in DETERMINISTIC:
        seeds = sample_seeds(seed, sample_ids.cpu(), stream=_STREAM_BASE + CORRUPTIONS.index(name))
        streams = SampleStreams(seeds, x.device)
    work = x.float()
    if x.shape[1] == 1:
        work = work.expand(-1, 3, -1, -1)
    out = _FUNCTIONS[name](work, config.value, streams).clamp(0, 1)
    if x.shape[1] == 1:
        out = (out * torch.tensor(LUMA, device=out.device).view(1, 3, 1, 1)).sum(1, keepdim=True).clamp(0, 1)
    return out.to(x.dtype)


__all__ = [
    "CORRUPTIONS",
    "DETERMINISTIC",
    "EXTRA",
    "SEVERITIES",
    "STANDARD",
    "Setting",
    "corrupt",
    "occlude",
    "occlusion_grid",
    "setting",
]
