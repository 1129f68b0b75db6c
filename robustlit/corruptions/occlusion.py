"""Occlusion: grey out a square patch at a chosen position (Zeiler & Fergus 2014 style sensitivity)."""

from __future__ import annotations

from torch import Tensor

from robustlit.errors import ConfigError


def occlusion_grid(size: int, patch: int, positions: int) -> list[int]:
    """``positions`` evenly spaced offsets along one axis, from 0 to ``size - patch`` inclusive.

    Example:
        >>> occlusion_grid(32, 8, 3)
        [0, 12, 24]
        >>> occlusion_grid(32, 32, 3)
        [0]
    """
    if patch < 1 or patch > size:
        raise ConfigError(f"occlusion patch={patch} must be between 1 and the image size {size}")
    if positions < 1:
        raise ConfigError(f"occlusion positions={positions} must be at least 1")
    span = size - patch
    if span == 0 or positions == 1:
        return [span // 2] if positions == 1 else [0]
    return sorted({round(i * span / (positions - 1)) for i in range(positions)})


def occlude(x: Tensor, patch: int, top: int, left: int, fill: float = 0.5) -> Tensor:
    """A copy of ``x`` (``(B, C, H, W)``) with the ``patch × patch`` square at ``(top, left)`` set to ``fill``.

    Example:
        >>> import torch
        >>> out = occlude(torch.ones(1, 1, 4, 4), 2, 1, 1, fill=0.0)
        >>> int(out.sum())
        12
    """
    height, width = x.shape[-2:]
    if not (0 <= top <= height - patch and 0 <= left <= width - patch) or patch < 1:
        raise ConfigError(f"occlusion patch {patch} at ({top}, {left}) does not fit a {height}x{width} image")
    out = x.clone()
    out[..., top:top + patch, left:left + patch] = fill
    return out
