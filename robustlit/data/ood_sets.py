"""Out-of-distribution test sets: download-free ones built here, and loaders for the usual files.

Download-free sets (all images in [0, 1], shaped like the ID data):

* ``digits``: scikit-learn's 1797 handwritten digits, upsampled bilinearly and repeated to RGB.
* ``gaussian``: i.i.d. ``clip(0.5 + 0.25·N(0, 1), 0, 1)`` per pixel (Outlier Exposure's N(0, 0.5²)
  on [−1, 1] images, mapped to [0, 1]).
* ``uniform``: i.i.d. U[0, 1] per pixel.
* ``blobs``: Bernoulli(0.7) pixels blurred with a Gaussian (σ = 1.5, per channel) and set to 0 below 0.75,
  as in Outlier Exposure's blobs.
* held-out classes: :class:`HeldOutClassesDataModule` trains and tests on some classes of a datamodule and
  exposes the test images of the others as ``ood_dataset``.

Noise images are a pure function of ``(seed, index)`` (:mod:`robustlit.rng`), so a set is the same on
every machine and for every batch size. Loaders: SVHN's ``test_32x32.mat`` (:class:`SVHNMat`) and any
folder of images such as Textures (DTD) or LSUN (:class:`ImageFolderOOD`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset
from torchvision.datasets.folder import IMG_EXTENSIONS
from typing_extensions import override

from robustlit.data.base import RobustDataModule
from robustlit.data.digits import load_digit_images
from robustlit.data.folder import ImageFiles
from robustlit.data.memory import InMemoryImages
from robustlit.errors import ConfigError, DataError
from robustlit.rng import normal, sample_seeds, uniform

NOISE_KINDS = ("gaussian", "uniform", "blobs")
#: Names :func:`build_ood_set` accepts; ``svhn`` and ``folder`` need a ``path``.
OOD_SETS = ("digits", *NOISE_KINDS, "svhn", "folder")


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(torch.float32)


class NoiseImages(Dataset):
    """Seeded noise images: ``gaussian``, ``uniform`` or ``blobs`` (label 0).

    Args:
        kind: One of :data:`NOISE_KINDS`.
        size: Number of images.
        channels: Image channels.
        image_size: Height and width.
        seed: Seed; image ``i`` depends only on ``(kind, seed, i)``.

    Example:
        >>> images = NoiseImages("blobs", size=4, channels=3, image_size=32)
        >>> x, y = images[0]
        >>> tuple(x.shape), float(x.min()) >= 0, float(x.max()) <= 1, torch.equal(x, images[0][0])
        ((3, 32, 32), True, True, True)
    """

    def __init__(self, kind: str, size: int = 1000, channels: int = 3, image_size: int = 32, seed: int = 0) -> None:
        if kind not in NOISE_KINDS:
            raise ConfigError(f"noise kind {kind!r} is unknown; choose one of {', '.join(NOISE_KINDS)}")
        if size < 1 or channels < 1 or image_size < 1:
            raise ConfigError(f"{kind} OOD set needs size, channels and image_size >= 1")
        self.kind, self.size, self.seed = kind, size, seed
        self.shape = (channels, image_size, image_size)
        self._kernel = _gaussian_kernel(1.5)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} {self.kind} images")
        seeds = sample_seeds(self.seed, [index], stream=NOISE_KINDS.index(self.kind) + 101)
        if self.kind == "gaussian":
            image = (0.5 + 0.25 * normal(seeds, self.shape)[0]).clamp(0, 1)
        elif self.kind == "uniform":
            image = uniform(seeds, self.shape)[0]
        else:
            image = self._blobs((uniform(seeds, self.shape)[0] < 0.7).float())
        return image, 0

    def _blobs(self, bits: torch.Tensor) -> torch.Tensor:
        radius = len(self._kernel) // 2
        channels = bits.shape[0]
        x = bits[:, None]  # (C, 1, H, W): blur each channel on its own
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), self._kernel.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), self._kernel.view(1, 1, -1, 1))
        x = x.view(channels, *bits.shape[1:])
        return torch.where(x < 0.75, torch.zeros_like(x), x).clamp(0, 1)


def digits_ood(image_size: int = 32, channels: int = 3, size: int | None = None) -> InMemoryImages:
    """scikit-learn's handwritten digits as OOD images, upsampled to ``image_size`` with ``channels`` channels.

    Args:
        image_size: Height and width (bilinear from 8×8).
        channels: 1, or 3 to repeat the gray channel (RGB).
        size: Keep the first ``size`` of the 1797 digits (None: all).

    Example:
        >>> images = digits_ood(32, 3, size=10)
        >>> len(images), tuple(images[0][0].shape)
        (10, (3, 32, 32))
    """
    images, labels = load_digit_images(image_size, 1)
    images = images.repeat(1, channels, 1, 1)
    if size is not None:
        images, labels = images[:size], labels[:size]
    return InMemoryImages(images, labels.tolist())


class SVHNMat(Dataset):
    """SVHN's ``train_32x32.mat`` / ``test_32x32.mat`` (``X``: 32×32×3×N uint8, ``y``: labels with 10 for 0).

    Args:
        path: The ``.mat`` file.
        image_size: Resize (bilinear, antialiased) to this size when it is not 32.
        channels: 3, or 1 for gray (ITU-R 601 luma).
        size: Keep the first ``size`` images (None: all).

    Raises:
        DataError: If the file is missing or does not hold ``X`` and ``y`` in SVHN's layout.

    Example:
        >>> svhn = SVHNMat("/data/svhn/test_32x32.mat")  # doctest: +SKIP
        >>> len(svhn), tuple(svhn[0][0].shape)  # doctest: +SKIP
        (26032, (3, 32, 32))
    """

    def __init__(self, path: str | Path, image_size: int = 32, channels: int = 3, size: int | None = None) -> None:
        from scipy.io import loadmat

        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"SVHN file {path} does not exist; pass path=…/test_32x32.mat")
        try:
            content = loadmat(str(path))
        except (ValueError, OSError, TypeError) as error:
            raise DataError(f"cannot read SVHN file {path} ({error}); expected a MATLAB .mat file") from error
        images = content.get("X")
        if images is None or images.ndim != 4 or images.shape[2] != 3 or "y" not in content:
            raise DataError(f"SVHN file {path} has no X of shape (32, 32, 3, N) and y; is it test_32x32.mat?")
        if size is not None:
            images = images[..., :size]
        x = torch.from_numpy(images.transpose(3, 2, 0, 1).copy())
        labels = content["y"].reshape(-1)[: x.shape[0]] % 10
        x = x.to(torch.float32) / 255
        if channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        if image_size != x.shape[-1]:
            x = F.interpolate(x, size=image_size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        self.images = x
        self.targets = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


class ImageFolderOOD(ImageFiles):
    """Every image below a folder, at any depth (Textures/DTD ``images/<class>/``, LSUN ``test/``), label 0.

    Images are resized (shorter side) and center-cropped to ``image_size``.

    Args:
        root: The folder.
        image_size: Output height and width.
        channels: 3 (RGB) or 1 (gray).
        size: Keep the first ``size`` images in sorted path order (None: all).

    Raises:
        DataError: If ``root`` is not a folder or holds no images.

    Example:
        >>> textures = ImageFolderOOD("/data/dtd/images", image_size=32)  # doctest: +SKIP
        >>> tuple(textures[0][0].shape)  # doctest: +SKIP
        (3, 32, 32)
    """

    def __init__(self, root: str | Path, image_size: int = 32, channels: int = 3, size: int | None = None) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"OOD image folder {root} does not exist; pass path=FOLDER")
        paths = sorted(
            str(p) for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith(".")
        )
        if not paths:
            raise DataError(f"OOD image folder {root} holds no images ({', '.join(IMG_EXTENSIONS)})")
        super().__init__([(p, 0) for p in paths[:size]], channels, image_size, resize=True)


def build_ood_set(
    spec: str | Mapping[str, Any], image_size: int, channels: int, size: int = 1000, seed: int = 0
) -> Dataset:
    """An OOD set from a name or a mapping ``{name, path?, size?}``, shaped like the ID images.

    Args:
        spec: One of :data:`OOD_SETS`, or a mapping; ``svhn`` and ``folder`` need ``path``.
        image_size: ID image height and width.
        channels: ID image channels.
        size: Default number of images (noise sets; a cap for the others).
        seed: Seed of the noise sets.

    Example:
        >>> len(build_ood_set({"name": "uniform", "size": 8}, image_size=32, channels=3))
        8
    """
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name", None)
    options.pop("label", None)
    count = int(options.pop("size", size))
    path = options.pop("path", None)
    if options:
        raise ConfigError(f"OOD set {name!r} got unknown options {sorted(options)}; use name, path, size, label")
    if name in NOISE_KINDS:
        return NoiseImages(name, count, channels, image_size, seed)
    if name == "digits":
        return digits_ood(image_size, channels, min(count, 1797))
    if name in ("svhn", "folder"):
        if path is None:
            raise ConfigError(f"OOD set {name!r} needs a path, e.g. {{name: {name}, path: /data/…}}")
        loader = SVHNMat if name == "svhn" else ImageFolderOOD
        return loader(path, image_size=image_size, channels=channels, size=count)
    raise ConfigError(f"unknown OOD set {name!r}; choose from {', '.join(OOD_SETS)} (or held_out)")


def ood_set_name(spec: str | Mapping[str, Any]) -> str:
    """The report name of an OOD set spec: its ``label`` if given, else its ``name``.

    Example:
        >>> ood_set_name({"name": "folder", "path": "/data/dtd", "label": "textures"})
        'textures'
    """
    if isinstance(spec, str):
        return spec
    return str(spec.get("label") or spec.get("name"))


def dataset_targets(dataset: Dataset) -> list[int]:
    """Labels of a dataset with ``targets`` (or a ``Subset`` of one), else read item by item.

    Example:
        >>> dataset_targets(Subset(InMemoryImages(torch.zeros(3, 1, 2, 2), [5, 6, 7]), [2, 0]))
        [7, 5]
    """
    if isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset)
        return [parent[i] for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


class _Relabelled(Dataset):
    """The samples of ``dataset`` at ``indices`` with labels mapped through ``mapping``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], mapping: Mapping[int, int]) -> None:
        self.dataset, self.indices, self.mapping = dataset, list(indices), dict(mapping)
        parent = dataset_targets(dataset)
        self.targets = [self.mapping[parent[i]] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, _ = self.dataset[self.indices[index]]
        return x, self.targets[index]


class HeldOutClassesDataModule(RobustDataModule):
    """Train and test on some classes of a datamodule; the test images of the others are the OOD set.

    Kept classes are relabelled ``0 … K'−1`` in their original order. ``ood_dataset`` holds the base test
    images of the held-out classes (the OOD suite reports it as ``held_out``).

    Args:
        base: The datamodule to split (e.g. CIFAR-10 or digits).
        held_out: Class ids (of ``base``) kept out of training and testing.
        **options: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` (default: ``base``'s).

    Example:
        >>> from robustlit.data import DigitsDataModule
        >>> dm = HeldOutClassesDataModule(DigitsDataModule(), held_out=[8, 9])
        >>> dm.num_classes, len(dm.ood_dataset), sorted(set(dataset_targets(dm.test_dataset)))[-1]
        (8, 71, 7)
    """

    def __init__(self, base: RobustDataModule, held_out: Sequence[int], **options: Any) -> None:
        defaults = {"batch_size": base.batch_size, "num_workers": base.num_workers}
        super().__init__(**{**defaults, **options})
        held = sorted({int(c) for c in held_out})
        if not held or held[0] < 0 or held[-1] >= base.num_classes or len(held) >= base.num_classes:
            raise ConfigError(
                f"held_out={list(held_out)} must name some but not all of the {base.num_classes} classes "
                f"(ids 0 … {base.num_classes - 1})"
            )
        self.base = base
        self.held_out = held
        kept = [c for c in range(base.num_classes) if c not in held]
        self._mapping = {c: i for i, c in enumerate(kept)}
        self.name = f"{base.name}-heldout{'-'.join(map(str, held))}"
        self.num_classes = len(kept)
        self.in_channels, self.image_size = base.in_channels, base.image_size
        self.mean, self.std = base.mean, base.std
        self.class_names = tuple(base.class_names[c] for c in kept)
        self.has_train = base.has_train
        self._ood: Dataset | None = None

    def _keep(self, dataset: Dataset) -> Dataset:
        targets = dataset_targets(dataset)
        return _Relabelled(dataset, [i for i, t in enumerate(targets) if t in self._mapping], self._mapping)

    @override
    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        return self._keep(self.base.train_dataset), self._keep(self.base.val_dataset)

    @override
    def load_test_dataset(self) -> Dataset:
        return self._keep(self.base.test_dataset)

    @property
    def ood_dataset(self) -> Dataset:
        """The base test images of the held-out classes (their original labels)."""
        if self._ood is None:
            test = self.base.test_dataset
            targets = dataset_targets(test)
            self._ood = Subset(test, [i for i, t in enumerate(targets) if t in self.held_out])
        return self._ood
