"""Colored Digits: a download-free spurious-correlation benchmark in the style of Colored MNIST."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from typing_extensions import override

from robustlit.data.base import RobustDataModule
from robustlit.data.checks import check_fraction, check_int
from robustlit.data.digits import load_digit_images
from robustlit.data.groups import GroupImages
from robustlit.data.splits import stratified_split
from robustlit.errors import ConfigError

COLOURS = ("red", "green")


def colour_digits(
    gray: torch.Tensor, digits: torch.Tensor, flip_probs: Sequence[float], label_noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour gray digits as in Colored MNIST and return RGB images, binary labels and ``(label, colour)`` groups.

    Reference: Arjovsky et al., "Invariant Risk Minimization", 2019: the label is ``digit < 5`` flipped with
    probability ``label_noise``; the colour is the label flipped with the sample's environment probability
    ``e`` (red = 0 in the red channel, green = 1 in the green channel). Samples are dealt to the environments
    in turn. The group id is ``2·label + colour``.

    Args:
        gray: ``(N, 1, H, W)`` images in [0, 1].
        digits: ``(N,)`` digit classes 0–9.
        flip_probs: Colour-flip probability ``e`` of each environment.
        label_noise: Label-flip probability.
        seed: Seed of the label and colour draws.

    Returns:
        ``(N, 3, H, W)`` images, labels ``(N,)`` and group ids ``(N,)``.

    Example:
        >>> x, y, g = colour_digits(torch.ones(4, 1, 2, 2), torch.tensor([0, 1, 7, 8]), [0.0], 0.0, seed=0)
        >>> y.tolist(), g.tolist(), x[0, :, 0, 0].tolist()
        ([1, 1, 0, 0], [3, 3, 0, 0], [0.0, 1.0, 0.0])
    """
    rng = np.random.RandomState(seed)
    n = digits.shape[0]
    labels = (digits.numpy() < 5).astype(np.int64)
    labels ^= (rng.random_sample(n) < label_noise).astype(np.int64)
    flip = np.asarray(flip_probs, dtype=np.float64)[np.arange(n) % len(flip_probs)]
    colours = labels ^ (rng.random_sample(n) < flip).astype(np.int64)
    images = torch.zeros(n, 3, *gray.shape[2:], dtype=gray.dtype)
    colour_index = torch.from_numpy(colours)
    images[torch.arange(n), colour_index] = gray[:, 0]
    labels_t = torch.from_numpy(labels)
    return images, labels_t, 2 * labels_t + colour_index


class ColoredDigitsDataModule(RobustDataModule):
    """Binary digits (``digit < 5``) whose colour predicts the label in training and the opposite at test.

    A group-annotated datamodule (:mod:`robustlit.data.groups`): batches are ``(x, y, g)`` with the four
    groups ``(label, colour)``. Training and validation samples come from the environments
    ``train_flip_probs`` (colour agrees with the label 90% and 80% of the time by default); test samples
    from ``test_flip_prob`` (agrees 10% of the time). A model that relies on colour scores well in training
    and badly on the test's majority groups; one that reads the digit reaches ``1 − label_noise`` on every
    group. Built from scikit-learn's bundled digits, so no download is needed.

    Args:
        image_size: Height and width of the upsampled digits (at least 8).
        train_flip_probs: Colour-flip probability of each training environment (Colored MNIST: 0.1, 0.2).
        test_flip_prob: Colour-flip probability at test (Colored MNIST: 0.9).
        label_noise: Label-flip probability (Colored MNIST: 0.25, capping any shape-based model at 75%).
        val_fraction: Share of each digit class held out for validation (training environments).
        test_fraction: Share of each digit class held out for testing.
        split_seed: Seed of the split and of the label and colour draws.
        **base: ``batch_size``, ``num_workers``, ``limit_test``, ``subset_seed`` of
            :class:`~robustlit.data.base.RobustDataModule`.

    Example:
        >>> dm = ColoredDigitsDataModule(image_size=16, batch_size=8)
        >>> dm.setup("fit")
        >>> x, y, g = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), dm.num_classes, dm.num_groups, dm.group_names[3]
        ((8, 3, 16, 16), 2, 4, 'y1_green')
    """

    name = "colored_digits"

    def __init__(
        self,
        image_size: int = 16,
        train_flip_probs: Sequence[float] = (0.1, 0.2),
        test_flip_prob: float = 0.9,
        label_noise: float = 0.25,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.image_size = check_int("image_size", image_size, 8)
        train_flip_probs = tuple(train_flip_probs)
        if not train_flip_probs:
            raise ConfigError("data.train_flip_probs is empty; give at least one environment, e.g. [0.1, 0.2]")
        for probability in (*train_flip_probs, test_flip_prob):
            if not isinstance(probability, int | float) or not 0 <= probability <= 1:
                raise ConfigError(f"data.train_flip_probs/test_flip_prob={probability!r} must lie in [0, 1]")
        if not isinstance(label_noise, int | float) or not 0 <= label_noise < 0.5:
            raise ConfigError(f"data.label_noise={label_noise!r} must lie in [0, 0.5)")
        val_fraction = check_fraction("val_fraction", val_fraction, allow_zero=True)
        test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=False)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} must be < 1")
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.train_flip_probs = train_flip_probs
        self.test_flip_prob = float(test_flip_prob)
        self.label_noise = float(label_noise)
        self.in_channels = 3
        self.num_classes = 2
        self.class_names = ("digit>=5", "digit<5")
        self.num_groups = 4
        self.group_names = tuple(f"y{label}_{colour}" for label in range(2) for colour in COLOURS)

        gray, digits = load_digit_images(self.image_size, 1)
        test_idx, val_idx, train_idx = stratified_split(digits.tolist(), [test_fraction, val_fraction],
                                                        seed=self.split_seed)
        self._parts: dict[str, GroupImages] = {}
        for offset, (part, indices, probs) in enumerate([
            ("train", train_idx, train_flip_probs), ("val", val_idx, train_flip_probs),
            ("test", test_idx, (self.test_flip_prob,)),
        ]):
            images, labels, groups = colour_digits(gray[indices], digits[indices], probs, self.label_noise,
                                                   seed=self.split_seed + offset)
            self._parts[part] = GroupImages(images, labels.tolist(), groups.tolist(), self.group_names)
        train = self._parts["train"]
        self.train_group_counts = tuple(torch.bincount(train.groups, minlength=self.num_groups).tolist())
        self.mean = tuple(train.images.mean(dim=(0, 2, 3)).tolist())
        std = train.images.std(dim=(0, 2, 3))
        # the blue channel is always 0: dividing by 1 keeps a perturbation there at its own size
        self.std = tuple(torch.where(std > 1e-6, std, torch.ones_like(std)).tolist())

    @override
    def load_fit_datasets(self) -> tuple[Dataset, Dataset]:
        return self._parts["train"], self._parts["val"]

    @override
    def load_test_dataset(self) -> Dataset:
        return self._parts["test"]
