"""Datasets as Lightning DataModules that yield ``(x, y)`` batches of images in [0, 1].

Normalization is left to the model: every datamodule exposes ``mean`` and ``std`` for it, along
with ``num_classes``, ``in_channels``, ``image_size`` and ``class_names``.
"""

from robustlit.data.base import RobustDataModule
from robustlit.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from robustlit.data.digits import DigitsDataModule, load_digit_images
from robustlit.data.folder import ImageFiles
from robustlit.data.imagefolder import ImageFolderDataModule
from robustlit.data.memory import InMemoryImages
from robustlit.data.splits import stratified_split

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "ImageFiles",
    "ImageFolderDataModule",
    "InMemoryImages",
    "RobustDataModule",
    "load_digit_images",
    "stratified_split",
]
