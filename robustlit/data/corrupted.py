"""The released CIFAR-10-C / CIFAR-100-C arrays: ``<corruption>.npy`` (5 severities stacked) and ``labels.npy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from typing_extensions import override

from robustlit.data.base import RobustDataModule
from robustlit.data.cifar import CIFAR10DataModule
from robustlit.data.memory import InMemoryImages
from robustlit.errors import ConfigError, DataError


def available_corruptions(root: str | Path) -> list[str]:
    """The corruption arrays present in a CIFAR-10-C folder (every ``*.npy`` except ``labels.npy``).

    Example:
        >>> available_corruptions("data/CIFAR-10-C")[:2]  # doctest: +SKIP
        ['brightness', 'contrast']
    """
    return sorted(p.stem for p in Path(root).glob("*.npy") if p.stem != "labels")


def load_corrupted_arrays(root: str | Path, corruption: str, severity: int) -> tuple[torch.Tensor, list[int]]:
    """Read one corruption at one severity from the released layout.

    ``root/<corruption>.npy`` holds ``5 · N`` uint8 images ``(N, 32, 32, 3)`` per severity, severity 1 first,
    and ``root/labels.npy`` the matching labels; severity ``s`` is rows ``(s − 1) · N`` to ``s · N``.

    Args:
        root: The CIFAR-10-C (or CIFAR-100-C) folder.
        corruption: File stem, e.g. ``"gaussian_noise"``.
        severity: 1 to 5.

    Returns:
        ``(N, 3, H, W)`` uint8 images and their labels.

    Raises:
        ConfigError: If ``severity`` is not 1..5.
        DataError: If a file is missing or unreadable, or the arrays do not have the released shapes.

    Example:
        >>> x, y = load_corrupted_arrays("data/CIFAR-10-C", "fog", 3)  # doctest: +SKIP
        >>> tuple(x.shape), len(y)  # doctest: +SKIP
        ((10000, 3, 32, 32), 10000)
    """
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ConfigError(f"data.severity={severity!r} must be an integer from 1 to 5")
    folder = Path(root).expanduser()
    images_path, labels_path = folder / f"{corruption}.npy", folder / "labels.npy"
    if not images_path.is_file():
        have = ", ".join(available_corruptions(folder)) if folder.is_dir() else f"{folder} does not exist"
        raise DataError(f"data.corruption={corruption}: {images_path} not found (available: {have or 'none'})")
    if not labels_path.is_file():
        raise DataError(f"{labels_path} not found; CIFAR-10-C needs labels.npy next to the corruption arrays")
    try:
        images = np.load(images_path, mmap_mode="r")
        labels = np.load(labels_path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {images_path} or {labels_path} ({error})") from error
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8 or images.shape[0] % 5:
        raise DataError(
            f"{images_path} has shape {images.shape} and dtype {images.dtype}; expected uint8 (5·N, H, W, 3) "
            "with the 5 severities stacked"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path} has {labels.shape[0]} labels for {images.shape[0]} images in {images_path}")
    per = images.shape[0] // 5
    rows = slice((severity - 1) * per, severity * per)
    chunk = torch.from_numpy(np.array(images[rows])).permute(0, 3, 1, 2).contiguous()
    return chunk, [int(v) for v in labels[rows]]


class CIFAR10CDataModule(RobustDataModule):
    """One corruption and severity of the released CIFAR-10-C (Hendrycks & Dietterich 2019), for evaluation only.

    Args:
        root: The CIFAR-10-C folder (``<corruption>.npy`` files and ``labels.npy``).
        corruption: Which corruption, e.g. ``"fog"``.
        severity: 1 to 5.
        **base: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` of
            :class:`~robustlit.data.base.RobustDataModule`.

    Example:
        >>> dm = CIFAR10CDataModule("data/CIFAR-10-C", corruption="fog", severity=5)  # doctest: +SKIP
        >>> dm.name  # doctest: +SKIP
        'cifar10c/fog/5'
    """

    has_train = False
    num_classes = 10
    in_channels = 3
    image_size = 32
    class_names = CIFAR10DataModule.class_names
    mean = CIFAR10DataModule.mean
    std = CIFAR10DataModule.std

    def __init__(self, root: str | Path, corruption: str, severity: int, **base: Any) -> None:
        super().__init__(**base)
        if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
            raise ConfigError(f"data.severity={severity!r} must be an integer from 1 to 5")
        self.root = Path(root).expanduser()
        if not (self.root / f"{corruption}.npy").is_file():
            have = ", ".join(available_corruptions(self.root)) if self.root.is_dir() else f"{self.root} does not exist"
            raise DataError(
                f"data.corruption={corruption}: no {corruption}.npy under data.root={self.root} "
                f"(available: {have or 'none'})"
            )
        self.corruption = corruption
        self.severity = severity
        self.name = f"cifar10c/{corruption}/{severity}"

    @override
    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        raise DataError("CIFAR-10-C is a test set only; train on data=cifar10 and evaluate on it")

    @override
    def load_test_dataset(self) -> Dataset:
        images, labels = load_corrupted_arrays(self.root, self.corruption, self.severity)
        return InMemoryImages(images, labels)
