"""Seeded, stratified splits of a labelled dataset into index sets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(targets: Sequence[int], fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Split sample indices class by class into one part per fraction plus the rest.

    Each class contributes ``round(fraction * class_size)`` samples to each part, so every part has
    the class balance of the whole. The draw uses NumPy's legacy ``RandomState``, whose stream NumPy
    keeps fixed across versions, so a seed gives the same split on every machine and release.

    Args:
        targets: the class id of every sample.
        fractions: the share of each class that goes to each part, in order; their sum must be <= 1.
        seed: seed of the draw, in [0, 2**32).

    Returns:
        ``len(fractions) + 1`` sorted index lists: one per fraction, then the remaining indices.

    Example:
        >>> val, train = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], [0.25], seed=0)
        >>> len(val), len(train), sorted(val + train) == list(range(8))
        (2, 6, True)
    """
    targets = np.asarray(targets)
    rng = np.random.RandomState(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        members = members[rng.permutation(len(members))]
        start = 0
        for part, fraction in zip(parts, fractions, strict=False):
            count = round(fraction * len(members))
            part.extend(members[start : start + count].tolist())
            start += count
        parts[-1].extend(members[start:].tolist())
    return [sorted(part) for part in parts]
