"""Huberised cross-entropy: cross-entropy with a linear tail, robust to mislabeled examples."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlit.losses.focal import _reduce
from robustlit.losses.soft_ce import one_hot_targets


def huberised_cross_entropy(logits: Tensor, targets: Tensor, tau: float = 10.0, reduction: str = "mean") -> Tensor:
    """Partially Huberised cross-entropy (PHuber-CE) of the predicted class probabilities.

    Reference: Menon et al., "Can gradient clipping mitigate label noise?", ICLR 2020. Per class
    probability ``p``: ``−log p`` when ``p > 1/τ``, else the tangent line ``−τ·p + log τ + 1``. Like
    Huber's loss it keeps the convex loss near the optimum and caps the gradient (at ``τ``) far
    from it, so confidently mislabeled points cannot dominate. Soft targets weight the classes:
    ``Σ_k y_k φ_τ(p_k)``. As ``τ → ∞`` it becomes the cross-entropy.

    Args:
        logits: Unnormalized scores ``(N, K)``.
        targets: Class indices ``(N,)`` or probabilities ``(N, K)``.
        tau: Gradient cap ``τ > 1`` (2, 10 and 50 in the paper's sweeps).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The loss, reduced as asked.

    Example:
        >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
        >>> y = torch.tensor([0, 0])  # the second point is confidently "mislabeled"
        >>> bool(huberised_cross_entropy(logits, y, tau=2.0) < F.cross_entropy(logits, y))
        True
    """
    if tau <= 1.0:
        raise ValueError(f"huberised cross-entropy needs tau > 1, got {tau}")
    log_probs = F.log_softmax(logits.float(), dim=1)
    probs = log_probs.exp()
    per_class = torch.where(probs > 1.0 / tau, -log_probs, -tau * probs + math.log(tau) + 1.0)
    losses = (one_hot_targets(targets, logits.shape[1]) * per_class).sum(dim=1)
    return _reduce(losses, reduction)
