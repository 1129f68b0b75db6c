"""A tiny seeded RobustModule, data and Trainer shared by the regularizer tests."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlit.module import RobustModule

CLASSES = 3


class TinyNet(RobustModule, L.LightningModule):
    """Conv → BatchNorm → ReLU → pooling → Linear on 3×8×8 inputs; remembers what the base loss saw."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes = CLASSES
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(4 * width, CLASSES),
        )
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def robust_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.seen.append((logits.detach().clone(), targets.detach().clone()))
        return super().robust_loss(logits, targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class PlainTinyNet(L.LightningModule):
    """The same network as a LightningModule that never heard of robustlit (its loss takes soft targets)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes = CLASSES
        self.net = TinyNet().net
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((x.detach().clone(), y.detach().clone()))
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of ``n`` 3×8×8 images in [0, 1] with labels."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, CLASSES, (n,), generator=generator)


def loader(n: int = 16, batch_size: int = 8) -> DataLoader:
    """A data loader over :func:`batch`."""
    return DataLoader(TensorDataset(*batch(n)), batch_size=batch_size)


def trainer(callbacks: list, batches: int = 2, epochs: int = 1, **options) -> L.Trainer:
    """A quiet CPU Trainer for a few batches."""
    return L.Trainer(
        callbacks=callbacks, max_epochs=epochs, limit_train_batches=batches, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **options,
    )
