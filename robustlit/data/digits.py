"""The 8x8 handwritten digits bundled with scikit-learn: a dataset that needs no download."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import Dataset
from typing_extensions import override

from robustlit.data.augment import crop_flip
from robustlit.data.base import RobustDataModule
from robustlit.data.checks import check_fraction, check_int
from robustlit.data.memory import InMemoryImages
from robustlit.data.splits import stratified_split
from robustlit.errors import ConfigError


def load_digit_images(image_size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return all 1797 digits as float32 images in [0, 1] and their int64 labels.

    The 8x8 images (values 0..16) are scaled to [0, 1] and upsampled bilinearly
    (``align_corners=False``). Interpolation runs in float64 and is rounded to float32 once, so the
    images, and hence the fingerprint, are the same bit for bit on every CPU.

    Args:
        image_size: output height and width, at least 8.
        channels: 1, or 3 to repeat the gray channel.

    Returns:
        Images of shape ``(1797, channels, image_size, image_size)`` and labels of shape ``(1797,)``.

    Example:
        >>> x, y = load_digit_images(16, 3)
        >>> tuple(x.shape), float(x.min()), float(x.max()), y.dtype
        ((1797, 3, 16, 16), 0.0, 1.0, torch.int64)
    """
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float64).unsqueeze(1) / 16.0
    if image_size != images.shape[-1]:
        images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False).clamp_(0, 1)
    images = images.to(torch.float32).repeat(1, channels, 1, 1)
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


class DigitsDataModule(RobustDataModule):
    """scikit-learn's 1797 handwritten digits, upsampled, split into train/val/test by class.

    The whole set is a few megabytes and ships with scikit-learn, so it is loaded and split when
    the module is built and every attribute is known at once. ``mean`` and ``std`` are measured
    on the training split at the chosen ``image_size``.

    Attributes:
        split_indices: ``{"train", "val", "test"}`` to sorted indices into the scikit-learn order
            (the order of :func:`load_digit_images`), for checking or reproducing the split.

    Args:
        image_size: height and width after bilinear upsampling of the 8x8 originals; at least 8.
        channels: 1 (gray), or 3 to feed models built for RGB input.
        val_fraction: share of each class held out for validation; 0 gives an empty validation set.
        test_fraction: share of each class held out for testing.
        split_seed: seed of the train/val/test split, independent of the run seed.
        augment: random translation of up to ``image_size // 8`` pixels (one original pixel) with
            zero padding on the training split; no flips, which would turn digits into others.
        **base: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` of
            :class:`~robustlit.data.base.RobustDataModule`.

    Example:
        >>> dm = DigitsDataModule(image_size=32, channels=3, batch_size=32)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), dm.num_classes, len(dm.train_dataset) + len(dm.val_dataset) + len(dm.test_dataset)
        ((32, 3, 32, 32), 10, 1797)
    """

    name = "digits"

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        augment: bool = False,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.image_size = check_int("image_size", image_size, 8)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"data.channels={channels!r} must be 1 or 3")
        val_fraction = check_fraction("val_fraction", val_fraction, allow_zero=True)
        test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=False)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"data.val_fraction={val_fraction} plus data.test_fraction={test_fraction} leaves no "
                "training data; make their sum < 1"
            )
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.in_channels = channels
        self.num_classes = 10
        self.class_names = tuple(str(digit) for digit in range(10))
        self.augment = augment

        self._images, self._targets = load_digit_images(self.image_size, channels)
        test_idx, val_idx, train_idx = stratified_split(
            self._targets.tolist(), [test_fraction, val_fraction], seed=self.split_seed
        )
        self.split_indices = {"train": train_idx, "val": val_idx, "test": test_idx}
        train = self._images[train_idx]
        self.mean = tuple(train.mean(dim=(0, 2, 3)).tolist())
        self.std = tuple(train.std(dim=(0, 2, 3)).tolist())

    @override
    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        transform = None
        if self.augment:
            transform = crop_flip(self.image_size, self.image_size // 8, "constant", flip=False)
        return self._part(self.split_indices["train"], transform), self._part(self.split_indices["val"])

    @override
    def load_test_dataset(self) -> Dataset:
        return self._part(self.split_indices["test"])

    def _part(self, indices: list[int], transform: Any = None) -> InMemoryImages:
        return InMemoryImages(self._images[indices], self._targets[indices].tolist(), transform)
