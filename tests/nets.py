"""Tiny seeded networks shared by the attack tests (inputs 3×H×W in [0, 1])."""

from __future__ import annotations

from collections.abc import Callable

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


def assert_attack_leaves_model_untouched(attack: Callable[[nn.Module], object], **cnn_options: object) -> None:
    """Run ``attack`` on a mixed-mode :func:`small_cnn` (training, BatchNorm frozen) and check it restored
    every submodule's mode and changed no buffer, parameter or parameter gradient."""
    model = small_cnn(**cnn_options).train()
    model[1].eval()  # a mixed-mode model: the BN layer alone is frozen
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    attack(model)
    assert model.training and not model[1].training
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
