"""Datasets as Lightning DataModules that yield ``(x, y)`` batches of images in [0, 1].

Normalization is left to the model: every datamodule exposes ``mean`` and ``std`` for it, along
with ``num_classes``, ``in_channels``, ``image_size`` and ``class_names``.
"""

from robustlit.data.base import RobustDataModule
from robustlit.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from robustlit.data.colored_digits import ColoredDigitsDataModule
from robustlit.data.corrupted import CIFAR10CDataModule, available_corruptions, load_corrupted_arrays
from robustlit.data.digits import DigitsDataModule, load_digit_images
from robustlit.data.folder import ImageFiles
from robustlit.data.groups import GroupImages, dataset_groups
from robustlit.data.imagefolder import ImageFolderDataModule
from robustlit.data.memory import InMemoryImages
from robustlit.data.ood_sets import (
    OOD_SETS,
    HeldOutClassesDataModule,
    ImageFolderOOD,
    NoiseImages,
    SVHNMat,
    build_ood_set,
    digits_ood,
)
from robustlit.data.splits import stratified_split

__all__ = [
    "CIFAR10CDataModule",
    "available_corruptions",
    "load_corrupted_arrays",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ColoredDigitsDataModule",
    "DigitsDataModule",
    "GroupImages",
    "HeldOutClassesDataModule",
    "ImageFiles",
    "ImageFolderDataModule",
    "ImageFolderOOD",
    "InMemoryImages",
    "NoiseImages",
    "OOD_SETS",
    "RobustDataModule",
    "SVHNMat",
    "build_ood_set",
    "dataset_groups",
    "digits_ood",
    "load_digit_images",
    "stratified_split",
]
