"""Focal loss: cross-entropy that down-weights examples the model already gets right."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustlit.losses.soft_ce import one_hot_targets


def focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, reduction: str = "mean") -> Tensor:
    """Focal loss ``−Σ_k y_k (1 − p_k)^γ log p_k`` for hard labels or soft targets.

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (for hard labels the sum is
    ``−(1 − p_y)^γ log p_y``). With ``gamma = 0`` it is the cross-entropy.

    Args:
        logits: Unnormalized scores ``(N, K)``.
        targets: Class indices ``(N,)`` or class probabilities ``(N, K)``.
        gamma: Focusing parameter ``γ ≥ 0`` (2 in the paper).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The loss, reduced as asked.

    Example:
        >>> import torch
        >>> logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> bool(focal_loss(logits, y, gamma=2.0) < focal_loss(logits, y, gamma=0.0))
        True
    """
    if gamma < 0:
        raise ValueError(f"focal loss needs gamma >= 0, got {gamma}")
    log_probs = F.log_softmax(logits.float(), dim=1)
    weights = (1.0 - log_probs.exp()).clamp_min(0.0).pow(gamma)
    losses = -(one_hot_targets(targets, logits.shape[1]) * weights * log_probs).sum(dim=1)
    return _reduce(losses, reduction)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    raise ValueError(f"reduction={reduction!r} is not supported; choose mean, sum or none")
