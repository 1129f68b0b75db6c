"""Tiny seeded networks shared by the attack tests (inputs 3×H×W in [0, 1])."""

from __future__ import annotations

import torch
from torch import nn


def small_cnn(
    *extra: nn.Module, head: tuple[nn.Module, ...] = (), width: int = 8, classes: int = 10, max_pool: bool = False
) -> nn.Module:
    """Conv → BatchNorm → ReLU → 2×2 pooling → linear, seeded; ``extra`` layers go first, ``head`` last."""
    torch.manual_seed(0)
    pool = nn.AdaptiveMaxPool2d(2) if max_pool else nn.AdaptiveAvgPool2d(2)
    return nn.Sequential(
        *extra,
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        pool,
        nn.Flatten(),
        nn.Linear(4 * width, classes),
        *head,
    )
