"""Any folder of images sorted into class folders, for training or for evaluation only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from typing_extensions import override

from robustlit.data.augment import crop_flip
from robustlit.data.base import RobustDataModule
from robustlit.data.checks import check_fraction, check_int, check_stats
from robustlit.data.folder import ImageFiles, find_classes, load_image, scan_images
from robustlit.data.splits import stratified_split
from robustlit.errors import ConfigError, DataError


class ImageFolderDataModule(RobustDataModule):
    """Images in class folders, read from disk with torchvision's ImageFolder conventions.

    Two layouts are accepted:

    * ``root/train/<class>/<image>`` and ``root/test/<class>/<image>``: trains on ``train`` (minus a
      stratified validation split) and tests on ``test``. Both must have the same class folders.
    * ``root/<class>/<image>``: one folder used as the test set, for evaluating a trained model;
      ``setup("fit")`` raises DataError.

    Labels follow the sorted class folder names, as in ``torchvision.datasets.ImageFolder``.
    Class folders, the test image list and the image size are read when the module is built,
    so layout errors show before any model is made; images are decoded when loaded, and a file
    that cannot be decoded raises DataError naming it.

    Args:
        root: the dataset folder.
        train_dir: name of the training folder under ``root``.
        test_dir: name of the test folder under ``root``.
        image_size: resize the shorter side to this and center-crop to a square. None keeps the
            images as they are; they must then all be square and as large as the first test image.
        channels: 3 converts every image to RGB (gray images included), 1 to gray.
        augment: random crop (4 pixels of reflect padding) and horizontal flip on the training split.
        val_fraction: share of each training class held out for validation; 0 for none.
        split_seed: seed of the validation split, independent of the run seed.
        mean: per-channel mean for the model to subtract; None gives 0.5 per channel.
        std: per-channel standard deviation for the model to divide by; None gives 0.25 per channel.
        name: dataset name for reports; None uses the name of ``root``.
        **base: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` of
            :class:`~robustlit.data.base.RobustDataModule`.

    Example:
        >>> dm = ImageFolderDataModule("/data/cifar10-jpeg", batch_size=256)  # doctest: +SKIP
        >>> dm.num_classes, dm.image_size, dm.class_names[:2]  # doctest: +SKIP
        (10, 32, ('airplane', 'automobile'))
    """

    def __init__(
        self,
        root: str | Path,
        train_dir: str = "train",
        test_dir: str = "test",
        image_size: int | None = None,
        channels: int = 3,
        augment: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"data.channels={channels!r} must be 1 or 3")
        self.in_channels = channels
        self.mean = check_stats("mean", (0.5,) * channels if mean is None else mean, channels, positive=False)
        self.std = check_stats("std", (0.25,) * channels if std is None else std, channels, positive=True)
        self.val_fraction = check_fraction("val_fraction", val_fraction, allow_zero=True)
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.augment = augment
        self._resize = image_size is not None

        if root is None or not str(root).strip():
            raise ConfigError("data.root is empty; pass data.root=PATH to the image folder")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(
                f"data.root={root} does not exist or is not a folder; pass data.root=PATH with "
                f"PATH/{train_dir}/<class>/<image> and PATH/{test_dir}/<class>/<image>, "
                "or PATH/<class>/<image> for evaluation only"
            )
        self.name = name or self.root.resolve().name
        self._train_root, self._test_root = self.root / train_dir, self.root / test_dir
        self._train_where, test_where = f"data.root/{train_dir}", f"data.root/{test_dir}"
        if self._train_root.is_dir() != self._test_root.is_dir():
            have, lack = (train_dir, test_dir) if self._train_root.is_dir() else (test_dir, train_dir)
            raise DataError(
                f"data.root={root} has {have}/ but no {lack}/; add {lack}/<class>/<image> next to it, "
                f"or pass data.root={self.root / have} to evaluate on that folder alone"
            )
        self.has_train = self._train_root.is_dir()
        if not self.has_train:
            self._test_root, test_where = self.root, "data.root"

        self.class_names = find_classes(self._test_root, test_where)
        self.num_classes = len(self.class_names)
        if self.has_train:
            self._check_same_classes(find_classes(self._train_root, self._train_where))
        self._test_samples = scan_images(self._test_root, self.class_names, test_where)
        if image_size is None:
            self.image_size = self._first_image_size()
        else:
            self.image_size = check_int("image_size", image_size, 1)

    @override
    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        if not self.has_train:
            raise DataError(
                f"data.root={self.root} is one image folder, which can only be evaluated; training needs "
                f"{self._train_where}/<class>/<image> and a test folder beside it"
            )
        samples = scan_images(self._train_root, self.class_names, self._train_where)
        labels = [label for _, label in samples]
        val_idx, train_idx = stratified_split(labels, [self.val_fraction], self.split_seed)
        augment = crop_flip(self.image_size, 4, "reflect", flip=True) if self.augment else None
        train = self._files([samples[i] for i in train_idx], augment)
        return train, self._files([samples[i] for i in val_idx])

    @override
    def load_test_dataset(self) -> Dataset:
        return self._files(self._test_samples)

    def _files(self, samples: list[tuple[str, int]], transform: Any = None) -> ImageFiles:
        return ImageFiles(samples, self.in_channels, self.image_size, self._resize, transform)

    def _check_same_classes(self, train_classes: Sequence[str]) -> None:
        if tuple(train_classes) != self.class_names:
            only_train = sorted(set(train_classes) - set(self.class_names)) or "-"
            only_test = sorted(set(self.class_names) - set(train_classes)) or "-"
            raise DataError(
                f"data.root={self.root}: train and test class folders differ (only in train: {only_train}; "
                f"only in test: {only_test}); use the same class folders in both so labels match"
            )

    def _first_image_size(self) -> int:
        path = self._test_samples[0][0]
        width, height = load_image(path, "L").size
        if width != height:
            raise DataError(
                f"image {path} is {width}x{height}, not square; pass data.image_size=N to resize and "
                "center-crop every image to NxN"
            )
        return width
