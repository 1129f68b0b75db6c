"""The base LightningDataModule that every robustlit dataset builds on."""

from __future__ import annotations

import hashlib
import os

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from typing_extensions import override

from robustlit.data.checks import check_int
from robustlit.errors import ConfigError

_FINGERPRINT_VERSION = "robustlit-data-fingerprint-v1"


class RobustDataModule(L.LightningDataModule):
    """Loaders of ``(x, y)`` batches, images in [0, 1], plus what a model needs to know about them.

    The data is never normalized: ``mean`` and ``std`` are exposed so that the model normalizes
    inside itself, which keeps attack budgets such as 8/255 in input units. Subclasses set the
    attributes below (in ``__init__`` where that is cheap, otherwise in ``setup``) and implement
    :meth:`load_fit_datasets` and :meth:`load_test_dataset`; this class adds the loaders, the
    seeded ``limit_test`` subset, the fingerprint and the description for the report.

    Attributes:
        name: short dataset name for reports, e.g. ``"cifar10"``.
        num_classes: number of classes; labels are ``0 .. num_classes - 1`` (int64 in batches).
        in_channels: image channels, 1 or 3.
        image_size: height and width of every image.
        mean: per-channel mean for the model to subtract.
        std: per-channel standard deviation for the model to divide by.
        class_names: class names in label order.
        has_train: False for evaluation-only data, where ``setup("fit")`` raises DataError.

    Args:
        batch_size: samples per batch in every loader.
        num_workers: worker processes per loader; 0 loads in the main process.
        limit_test: evaluate on this many test samples, drawn once with ``subset_seed``; None uses all.
        subset_seed: seed of the ``limit_test`` draw. It is independent of the run seed, so runs
            with different seeds are evaluated on the same samples.

    Example:
        >>> from robustlit.data import DigitsDataModule
        >>> dm = DigitsDataModule(batch_size=64, limit_test=100)
        >>> dm.setup("test")
        >>> x, y = next(iter(dm.test_dataloader()))
        >>> tuple(x.shape), y.dtype, len(dm.test_dataset)
        ((64, 1, 32, 32), torch.int64, 100)
    """

    name: str = "data"
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    has_train: bool = True

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        limit_test: int | None = None,
        subset_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.limit_test = None if limit_test is None else check_int("limit_test", limit_test, 1)
        self.subset_seed = check_int("subset_seed", subset_seed, 0)
        if self.subset_seed >= 2**32:
            raise ConfigError(f"data.subset_seed={subset_seed} must be below 2**32")
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._test: Dataset | None = None
        self._fingerprint: str | None = None

    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        """Return the training set (with augmentation) and the validation set (without).

        Raises:
            DataError: if the data has no training split or cannot be read.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load_fit_datasets()")

    def load_test_dataset(self) -> Dataset:
        """Return the full test set, in a fixed order and without augmentation.

        Raises:
            DataError: if the test data is missing or cannot be read.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load_test_dataset()")

    @override
    def setup(self, stage: str | None = None) -> None:
        """Load the datasets that ``stage`` needs; calling it again is cheap.

        ``stage=None`` loads everything the data has: the test set only for evaluation-only data.
        """
        wants_fit = stage in ("fit", "validate") or (stage is None and self.has_train)
        if wants_fit and self._train is None:
            self._train, self._val = self.load_fit_datasets()
        if stage in (None, "test", "predict") and self._test is None:
            self._test = self._limit(self.load_test_dataset())

    @property
    def train_dataset(self) -> Dataset:
        """The training set, loaded on first use."""
        if self._train is None:
            self.setup("fit")
        return self._train

    @property
    def val_dataset(self) -> Dataset:
        """The validation set, loaded on first use."""
        if self._val is None:
            self.setup("fit")
        return self._val

    @property
    def test_dataset(self) -> Dataset:
        """The test set after ``limit_test``, loaded on first use."""
        if self._test is None:
            self.setup("test")
        return self._test

    @override
    def train_dataloader(self) -> DataLoader:
        """Shuffled batches, in an order fixed by the seed that ``lightning.seed_everything`` set."""
        dataset = self.train_dataset
        seed = os.environ.get("PL_GLOBAL_SEED")
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        # BatchNorm fails on a training batch of one sample, so never end an epoch with one.
        drop_last = len(dataset) > self.batch_size and len(dataset) % self.batch_size == 1
        return self._loader(dataset, shuffle=True, generator=generator, drop_last=drop_last)

    @override
    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._loader(self.val_dataset)

    @override
    def test_dataloader(self) -> DataLoader:
        """Test batches (after ``limit_test``) in a fixed order."""
        return self._loader(self.test_dataset)

    @override
    def predict_dataloader(self) -> DataLoader:
        """The test batches, so ``trainer.predict`` runs on the evaluation data."""
        return self._loader(self.test_dataset)

    def fingerprint(self) -> str:
        """Return the sha256 hex digest of the test images and labels (after ``limit_test``).

        It hashes the float32 image bytes and int64 labels in test order, so it is the same for
        every batch size, worker count and run seed, and changes when the data, the image size,
        the channels or ``limit_test`` / ``subset_seed`` change.

        Example:
            >>> from robustlit.data import DigitsDataModule
            >>> len(DigitsDataModule(limit_test=50).fingerprint())
            64
        """
        if self._fingerprint is None:
            images, labels = hashlib.sha256(), hashlib.sha256()
            count, shape = 0, None
            for x, y, *_ in DataLoader(self.test_dataset, batch_size=256, num_workers=self.num_workers):
                images.update(np.ascontiguousarray(x.numpy(), dtype="<f4"))
                labels.update(np.ascontiguousarray(y.numpy(), dtype="<i8"))
                count, shape = count + len(y), tuple(x.shape[1:])
            digest = hashlib.sha256(f"{_FINGERPRINT_VERSION} n={count} shape={shape}".encode())
            digest.update(images.digest())
            digest.update(labels.digest())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, object]:
        """Return the facts about the data that go into the report's ``data`` section.

        Returns:
            ``name``, ``n_train`` and ``n_val`` (None for evaluation-only data), ``n_test`` (after
            ``limit_test``), ``num_classes``, ``limit_test``, ``subset_seed`` and ``fingerprint``.

        Example:
            >>> from robustlit.data import DigitsDataModule
            >>> info = DigitsDataModule(limit_test=100).describe()
            >>> info["name"], info["n_train"], info["n_test"]
            ('digits', 1259, 100)
        """
        self.setup()
        return {
            "name": self.name,
            "n_train": None if self._train is None else len(self._train),
            "n_val": None if self._val is None else len(self._val),
            "n_test": len(self.test_dataset),
            "num_classes": self.num_classes,
            "limit_test": self.limit_test,
            "subset_seed": self.subset_seed,
            "fingerprint": self.fingerprint(),
        }

    def _limit(self, dataset: Dataset) -> Dataset:
        if self.limit_test is None:
            return dataset
        size = len(dataset)
        if self.limit_test > size:
            raise ConfigError(
                f"data.limit_test={self.limit_test} is more than the {size} test samples of {self.name}; "
                f"pass data.limit_test<={size} or data.limit_test=null"
            )
        # NumPy's legacy RandomState stream never changes, so a seed picks the same samples everywhere;
        # sorting keeps test order and makes a smaller limit a subset of a larger one.
        order = np.random.RandomState(self.subset_seed).permutation(size)
        return Subset(dataset, sorted(order[: self.limit_test].tolist()))

    def _loader(
        self,
        dataset: Dataset,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
