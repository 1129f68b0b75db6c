"""Cross-entropy that accepts hard labels or soft targets, and helpers that make soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy against class indices ``(N,)`` or class probabilities ``(N, K)``.

    Args:
        logits: Unnormalized scores, shape ``(N, K)``.
        targets: Class indices (int64) or probabilities that sum to one per row.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The loss, reduced as asked.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> hard = soft_cross_entropy(logits, torch.tensor([0]))
        >>> soft = soft_cross_entropy(logits, torch.tensor([[1.0, 0.0]]))
        >>> torch.allclose(hard, soft)
        True
    """
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, reduction=reduction)
    if targets.shape != logits.shape:
        raise ValueError(f"soft targets of shape {tuple(targets.shape)} do not match logits {tuple(logits.shape)}")
    losses = -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def one_hot_targets(targets: Tensor, num_classes: int) -> Tensor:
    """Float class probabilities from hard labels; soft targets pass through unchanged.

    Example:
        >>> one_hot_targets(torch.tensor([1]), 3).tolist()
        [[0.0, 1.0, 0.0]]
    """
    if targets.ndim == 2:
        return targets
    return F.one_hot(targets, num_classes).to(torch.float32)


def label_smoothing_targets(targets: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """Mix targets with the uniform distribution: ``(1 - smoothing) * y + smoothing / K``.

    Reference: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016.

    Example:
        >>> label_smoothing_targets(torch.tensor([0]), 2, 0.2)
        tensor([[0.9000, 0.1000]])
    """
    return (1.0 - smoothing) * one_hot_targets(targets, num_classes) + smoothing / num_classes
