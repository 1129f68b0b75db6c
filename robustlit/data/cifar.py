"""CIFAR-10 and CIFAR-100 from the python-pickle files that torchvision downloads."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset
from typing_extensions import override

from robustlit.data.augment import crop_flip
from robustlit.data.base import RobustDataModule
from robustlit.data.checks import check_fraction, check_int
from robustlit.data.memory import InMemoryImages
from robustlit.data.splits import stratified_split
from robustlit.errors import DataError

CIFAR100_CLASSES = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)


def read_cifar_batches(folder: Path, files: Sequence[str], label_key: str) -> tuple[torch.Tensor, list[int]]:
    """Read CIFAR pickle batches into one ``uint8`` tensor of shape ``(N, 3, 32, 32)`` and labels.

    Args:
        folder: ``cifar-10-batches-py`` or ``cifar-100-python``.
        files: batch file names in order, e.g. ``["test_batch"]``.
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).

    Returns:
        The images and their labels.

    Raises:
        DataError: naming the file, if a batch is missing or unreadable.

    Example:
        >>> folder = Path("data/cifar-10-batches-py")
        >>> x, y = read_cifar_batches(folder, ["test_batch"], "labels")  # doctest: +SKIP
        >>> tuple(x.shape), len(y)  # doctest: +SKIP
        ((10000, 3, 32, 32), 10000)
    """
    images, labels = [], []
    for name in files:
        path = folder / name
        try:
            with open(path, "rb") as handle:
                # The CIFAR files are Python 2 pickles; latin1 turns their byte-string keys into str.
                batch = pickle.load(handle, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(label) for label in batch[label_key])
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"cannot read {path} ({type(err).__name__}: {err}); delete {folder} and pass "
                "data.download=true, or put a complete copy there"
            ) from err
    return torch.from_numpy(np.concatenate(images)), labels


class _CIFARDataModule(RobustDataModule):
    """Shared code of CIFAR-10 and CIFAR-100; the subclasses fill in the class attributes."""

    title: str
    folder_name: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    torchvision_class: type
    in_channels = 3
    image_size = 32

    def __init__(
        self,
        root: str | Path = "data",
        download: bool = False,
        augment: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.root = Path(root).expanduser()
        self.download = download
        self.augment = augment
        self.val_fraction = check_fraction("val_fraction", val_fraction, allow_zero=True)
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.num_classes = len(self.class_names)

    @property
    def folder(self) -> Path:
        """The folder that holds the pickle batches, e.g. ``data/cifar-10-batches-py``."""
        return self.root / self.folder_name

    @override
    def prepare_data(self) -> None:
        """Download and extract the archive when ``download`` is set and the data is not there yet."""
        if not self.download or self.folder.is_dir():
            return
        try:
            for train in (True, False):
                self.torchvision_class(str(self.root), train=train, download=True)
        except (OSError, RuntimeError) as err:
            raise DataError(
                f"downloading {self.title} to data.root={self.root} failed ({err}); check the internet "
                f"connection, or put {self.folder_name} under data.root yourself"
            ) from err

    @override
    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        images, labels = read_cifar_batches(self._existing_folder(), self.train_files, self.label_key)
        val_idx, train_idx = stratified_split(labels, [self.val_fraction], self.split_seed)
        augment = crop_flip(32, 4, "reflect", flip=True) if self.augment else None
        train = InMemoryImages(images[train_idx], [labels[i] for i in train_idx], augment)
        return train, InMemoryImages(images[val_idx], [labels[i] for i in val_idx])

    @override
    def load_test_dataset(self) -> Dataset:
        images, labels = read_cifar_batches(self._existing_folder(), self.test_files, self.label_key)
        return InMemoryImages(images, labels)

    def _existing_folder(self) -> Path:
        if self.download:
            self.prepare_data()
        if not self.folder.is_dir():
            raise DataError(
                f"{self.title} not found under data.root={self.root} ({self.root.resolve()}); pass "
                f"data.download=true (needs internet) or data.root=PATH containing {self.folder_name}"
            )
        return self.folder


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10: 50000 training and 10000 test RGB images of 32x32 pixels in 10 classes.

    Reads torchvision's on-disk format, ``root/cifar-10-batches-py``, into memory. Citation:
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.

    Args:
        root: the folder that holds (or will hold) ``cifar-10-batches-py``.
        download: download the data into ``root`` if it is missing (needs internet).
        augment: random crop (4 pixels of reflect padding) and horizontal flip on the training split.
        val_fraction: share of each training class held out for validation; 0 for none.
        split_seed: seed of the validation split, independent of the run seed.
        **base: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` of
            :class:`~robustlit.data.base.RobustDataModule`.

    Example:
        >>> dm = CIFAR10DataModule(root="data", limit_test=1000)
        >>> dm.num_classes, dm.image_size, dm.mean
        (10, 32, (0.4914, 0.4822, 0.4465))
        >>> dm.setup("test")  # doctest: +SKIP
    """

    name = "cifar10"
    title = "CIFAR-10"
    folder_name = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    torchvision_class = torchvision.datasets.CIFAR10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100: 50000 training and 10000 test RGB images of 32x32 pixels in 100 fine classes.

    Reads torchvision's on-disk format, ``root/cifar-100-python``, into memory; labels are the
    fine labels. Citation: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.

    Args:
        root: the folder that holds (or will hold) ``cifar-100-python``.
        download: download the data into ``root`` if it is missing (needs internet).
        augment: random crop (4 pixels of reflect padding) and horizontal flip on the training split.
        val_fraction: share of each training class held out for validation; 0 for none.
        split_seed: seed of the validation split, independent of the run seed.
        **base: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` of
            :class:`~robustlit.data.base.RobustDataModule`.

    Example:
        >>> dm = CIFAR100DataModule(root="data")
        >>> dm.num_classes, dm.class_names[:2]
        (100, ('apple', 'aquarium_fish'))
    """

    name = "cifar100"
    title = "CIFAR-100"
    folder_name = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    torchvision_class = torchvision.datasets.CIFAR100
    class_names = CIFAR100_CLASSES
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
