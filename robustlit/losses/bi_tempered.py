"""Bi-tempered logistic loss: a bounded, heavy-tailed replacement of softmax cross-entropy."""

from __future__ import annotations

import torch
from torch import Tensor

from robustlit.losses.focal import _reduce
from robustlit.losses.soft_ce import one_hot_targets


def log_t(u: Tensor, t: float) -> Tensor:
    """Tempered logarithm ``(u^(1−t) − 1) / (1 − t)``; the natural log at ``t = 1``.

    Example:
        >>> log_t(torch.tensor([1.0, 4.0]), 0.5).tolist()
        [0.0, 2.0]
    """
    return u.log() if t == 1.0 else (u.pow(1.0 - t) - 1.0) / (1.0 - t)


def exp_t(u: Tensor, t: float) -> Tensor:
    """Tempered exponential ``[1 + (1 − t)·u]_+^(1/(1−t))``, the inverse of :func:`log_t`.

    Example:
        >>> exp_t(torch.tensor([0.0, 2.0]), 0.5).tolist()
        [1.0, 4.0]
    """
    return u.exp() if t == 1.0 else (1.0 + (1.0 - t) * u).clamp_min(0.0).pow(1.0 / (1.0 - t))


def tempered_softmax(logits: Tensor, t: float, num_iters: int = 5) -> Tensor:
    """Probabilities ``exp_t(a − λ(a))`` whose normalizer ``λ`` makes each row sum to one.

    Reference: Amid et al., "Robust Bi-Tempered Logistic Loss Based on Bregman Divergences", NeurIPS 2019.
    ``λ`` has no closed form for ``t ≠ 1``: for ``t > 1`` it comes from the paper's fixed-point
    iteration (``num_iters`` rounds), for ``t < 1`` from bisection (``num_iters`` steps with a
    floor of 30, since each step gains one bit).

    Args:
        logits: Activations ``(N, K)``.
        t: Temperature ``t2 > 0``; ``t > 1`` gives heavier tails than softmax.
        num_iters: Iterations of the normalization.

    Returns:
        Probabilities ``(N, K)``.

    Example:
        >>> probs = tempered_softmax(torch.tensor([[1.0, 0.0, -1.0]]), t=1.5)
        >>> round(float(probs.sum()), 4)
        1.0
    """
    if t <= 0:
        raise ValueError(f"tempered softmax needs t > 0, got {t}")
    if t == 1.0:
        return torch.softmax(logits, dim=-1)
    return exp_t(logits - _normalization(logits, t, num_iters), t)


def _normalization(logits: Tensor, t: float, num_iters: int) -> Tensor:
    mu = logits.amax(dim=-1, keepdim=True)
    shifted = logits - mu
    if t > 1.0:
        scaled = shifted
        for _ in range(num_iters):
            partition = exp_t(scaled, t).sum(dim=-1, keepdim=True)
            scaled = shifted * partition.pow(1.0 - t)
        partition = exp_t(scaled, t).sum(dim=-1, keepdim=True)
        return -log_t(1.0 / partition, t) + mu
    # t < 1: exp_t has finite support, so bisect on λ between 0 and the bound from the active classes.
    active = (shifted > -1.0 / (1.0 - t)).sum(dim=-1, keepdim=True).to(logits.dtype)
    lower = torch.zeros_like(mu)
    upper = -log_t(1.0 / active, t) * torch.ones_like(lower)
    for _ in range(max(num_iters, 30)):
        middle = (upper + lower) / 2.0
        total = exp_t(shifted - middle, t).sum(dim=-1, keepdim=True)
        too_small = total < 1.0
        upper = torch.where(too_small, middle, upper)
        lower = torch.where(too_small, lower, middle)
    return (upper + lower) / 2.0 + mu


def bi_tempered_logistic_loss(
    logits: Tensor, targets: Tensor, t1: float = 0.8, t2: float = 1.2, num_iters: int = 5, reduction: str = "mean"
) -> Tensor:
    """Bregman divergence of ``log_t1`` between targets and the ``t2``-tempered softmax.

    Reference: Amid et al., "Robust Bi-Tempered Logistic Loss Based on Bregman Divergences", NeurIPS 2019.
    Per sample: ``Σ_k y_k (log_t1 y_k − log_t1 ŷ_k) − (y_k^(2−t1) − ŷ_k^(2−t1)) / (2 − t1)``.
    ``t1 < 1`` bounds the loss (robust to outliers, mislabeled points), ``t2 > 1`` gives a heavy tail
    (robust near the boundary). With ``t1 = t2 = 1`` it is the cross-entropy (for hard labels).

    Args:
        logits: Activations ``(N, K)``.
        targets: Class indices ``(N,)`` or probabilities ``(N, K)``.
        t1: Temperature of the loss, ``0 ≤ t1 ≤ 1`` (0.8 is a common robust choice).
        t2: Temperature of the tempered softmax, ``t2 > 0`` (1.2 is a common robust choice).
        num_iters: Iterations of the tempered-softmax normalization.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The loss, reduced as asked.

    Example:
        >>> logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
        >>> ce = torch.nn.functional.cross_entropy(logits, y)
        >>> torch.allclose(bi_tempered_logistic_loss(logits, y, t1=1.0, t2=1.0), ce)
        True
    """
    if not 0.0 <= t1 <= 1.0:
        raise ValueError(f"bi-tempered loss needs 0 <= t1 <= 1, got t1={t1}")
    probs = tempered_softmax(logits.float(), t2, num_iters)
    labels = one_hot_targets(targets, logits.shape[1])
    # y·log_t(y) is 0 where y = 0; the tiny offset keeps log_t finite there at t1 = 1.
    losses = (
        labels * (log_t(labels + 1e-10, t1) - log_t(probs, t1))
        - (labels.pow(2.0 - t1) - probs.pow(2.0 - t1)) / (2.0 - t1)
    ).sum(dim=-1)
    return _reduce(losses, reduction)
