"""The group-annotated data interface: datasets whose samples are ``(x, y, group)``.

A group-annotated datamodule sets ``num_groups``, ``group_names`` and ``train_group_counts``, and its
datasets yield ``(image, label, group)``; batches are then ``(x, y, g)``. Group DRO, IRM and V-REx
read ``g`` from the training batch (:attr:`robustlit.module.StepContext.groups`), and
:class:`robustlit.suites.GroupSuite` reads each evaluated dataset's ``groups`` by sample id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset, Subset

from robustlit.data.memory import InMemoryImages


class GroupImages(InMemoryImages):
    """In-memory images with a label and a group id each: items are ``(x, y, group)``.

    Args:
        images: ``(N, C, H, W)`` images (uint8, or floats in [0, 1]).
        targets: Class id of every image.
        groups: Group id of every image.
        group_names: Name of each group id, in id order.
        transform: Optional callable applied to each float image.

    Example:
        >>> ds = GroupImages(torch.zeros(2, 3, 4, 4), [0, 1], [1, 2], ("a", "b", "c"))
        >>> x, y, g = ds[1]
        >>> y, g, ds.groups.tolist()
        (1, 2, [1, 2])
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: Sequence[int],
        groups: Sequence[int],
        group_names: Sequence[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(images, targets, transform)
        if len(groups) != len(targets):
            raise ValueError(f"{len(groups)} group ids for {len(targets)} images")
        self.groups = torch.as_tensor(list(groups), dtype=torch.long)
        self.group_names = tuple(group_names)
        if len(self.groups) and (self.groups.min() < 0 or self.groups.max() >= len(self.group_names)):
            raise ValueError(f"group ids must lie in [0, {len(self.group_names)})")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:  # type: ignore[override]
        x, y = super().__getitem__(index)
        return x, y, int(self.groups[index])


def dataset_groups(dataset: Dataset) -> tuple[torch.Tensor, tuple[str, ...]] | None:
    """Group id of every sample of ``dataset`` (through ``Subset`` wrappers) and the group names, or ``None``.

    Example:
        >>> ds = GroupImages(torch.zeros(3, 1, 2, 2), [0, 0, 1], [0, 1, 1], ("a", "b"))
        >>> ids, names = dataset_groups(Subset(ds, [2, 0]))
        >>> ids.tolist(), names
        ([1, 0], ('a', 'b'))
    """
    if isinstance(dataset, Subset):
        inner = dataset_groups(dataset.dataset)
        return None if inner is None else (inner[0][torch.as_tensor(list(dataset.indices))], inner[1])
    groups = getattr(dataset, "groups", None)
    names = getattr(dataset, "group_names", None)
    if groups is None or names is None:
        return None
    return torch.as_tensor(groups, dtype=torch.long), tuple(names)
