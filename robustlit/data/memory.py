"""An in-memory image dataset for sets small enough to hold as one tensor (digits, CIFAR)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset


class InMemoryImages(Dataset):
    """Images held as one ``(N, C, H, W)`` tensor, returned as float32 in [0, 1] with an int label.

    Args:
        images: ``uint8`` images (divided by 255 when read) or floating images already in [0, 1].
        targets: the class id of every image.
        transform: optional callable applied to each float image, e.g. training augmentation.

    Example:
        >>> ds = InMemoryImages(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [0, 1, 0, 1])
        >>> x, y = ds[1]
        >>> tuple(x.shape), x.dtype, y
        ((3, 8, 8), torch.float32, 1)
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: Sequence[int],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.ndim != 4 or len(images) != len(targets):
            raise ValueError(
                f"images must be (N, C, H, W) with N == len(targets); got {tuple(images.shape)} "
                f"and {len(targets)} targets"
            )
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index]
        x = x.to(torch.float32).div_(255) if x.dtype == torch.uint8 else x.to(torch.float32)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]
