"""L1 threat model inside the image box: exact projection and the sparse steepest-ascent step.

Reference: Croce & Hein, "Mind the Box: l1-APGD for Sparse Adversarial Attacks on Image
Classifiers", ICML 2021. The effective threat model is the L1 ball intersected with [0, 1]^d;
projecting onto the ball and then clipping to the box is not the closest point of that set, and a
step that spends its budget on pixels already at 0 or 1 is wasted.
"""

from __future__ import annotations

import torch
from torch import Tensor


def l1_projection(delta: Tensor, eps: float, x: Tensor | None = None) -> Tensor:
    """Euclidean projection of each sample of ``delta`` onto ``{δ : ‖δ‖₁ ≤ ε, 0 ≤ x + δ ≤ 1}``.

    The solution soft-thresholds the magnitudes and clips them to the box, ``δ_i = sign(v_i) ·
    clip(|v_i| − λ, 0, u_i)`` with ``u_i`` the room left in the direction of ``v_i``. The threshold
    ``λ ≥ 0`` is found exactly (no iterations): the L1 norm is piecewise linear in ``λ`` with
    breakpoints at ``|v_i|`` and ``|v_i| − u_i``, so sorting them gives it in closed form.
    The computation runs in float64, so the L1 constraint holds to float rounding.

    Args:
        delta: Perturbations ``(N, ...)`` to project.
        eps: L1 radius (non-negative).
        x: Clean inputs in [0, 1] with the shape of ``delta``; ``None`` projects onto the ball alone.

    Returns:
        The projected perturbations, same shape and dtype as ``delta``.

    Example:
        >>> import torch
        >>> l1_projection(torch.tensor([[0.5, -0.25]]), 0.5)
        tensor([[ 0.3750, -0.1250]])
        >>> l1_projection(torch.tensor([[0.5, -0.25]]), 0.5, x=torch.tensor([[0.9, 0.5]]))
        tensor([[ 0.1000, -0.2500]])
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    flat = delta.flatten(1).to(torch.float64)
    magnitude = flat.abs()
    if x is None:
        room = magnitude
    else:
        inputs = x.flatten(1).to(torch.float64)
        room = torch.where(flat >= 0, 1.0 - inputs, inputs).clamp_min(0.0)
    threshold = _soft_threshold(magnitude, room, eps)
    projected = (magnitude - threshold[:, None]).clamp_min(0.0).minimum(room)
    return (flat.sign() * projected).to(delta.dtype).view_as(delta)


def _soft_threshold(magnitude: Tensor, room: Tensor, eps: float) -> Tensor:
    """Smallest ``λ ≥ 0`` with ``Σ clip(magnitude − λ, 0, room) ≤ eps``, per row."""
    # g(λ) = Σ clip(m_i − λ, 0, u_i) decreases piecewise linearly; piece i slopes down on [m_i − u_i, m_i].
    # Walking the breakpoints from the largest down, g grows by (active pieces) × (gap) between them.
    points = torch.cat([magnitude, magnitude - room], dim=1)
    change = torch.cat([torch.ones_like(magnitude), -torch.ones_like(room)], dim=1)
    points, order = points.sort(dim=1, descending=True)
    active = change.gather(1, order).cumsum(dim=1)
    growth = active[:, :-1] * (points[:, :-1] - points[:, 1:])
    value = torch.cat([torch.zeros_like(points[:, :1]), growth.cumsum(dim=1)], dim=1)  # g at each breakpoint
    target = torch.full_like(value[:, :1], eps)
    after = torch.searchsorted(value, target).squeeze(1).clamp(1, points.shape[1] - 1)
    before = after - 1
    base = value.gather(1, before[:, None]).squeeze(1)
    slope = active.gather(1, before[:, None]).squeeze(1).clamp_min(1.0)
    threshold = points.gather(1, before[:, None]).squeeze(1) - (eps - base) / slope
    # rows whose box-clipped perturbation already fits need no thresholding
    fits = magnitude.minimum(room).sum(dim=1) <= eps
    return torch.where(fits, torch.zeros_like(threshold), threshold.clamp_min(0.0))


def l1_steepest_ascent(grad: Tensor, sparsity: float | Tensor, point: Tensor | None = None) -> Tensor:
    """Sparse steepest-ascent direction for L1: the sign of the top-k gradient entries, unit L1 norm.

    The exact L1 steepest direction moves one coordinate, which makes PGD crawl; moving the
    ``k = round(sparsity · d)`` largest gradient entries (at least one) is the usual remedy. Entries
    that the box stops from moving (at 0 with a negative gradient, at 1 with a positive one) are
    excluded before the top-k is taken, so the step's budget is spent where it can act.

    Args:
        grad: Gradient ``(N, ...)`` of the loss to increase.
        sparsity: Fraction of the ``d`` coordinates to move, a float or one value per sample in (0, 1].
        point: Current inputs ``x + δ`` in [0, 1]; ``None`` ignores the box.

    Returns:
        A direction with ``‖·‖₁ = 1`` per sample (zero where no coordinate can move).

    Example:
        >>> import torch
        >>> l1_steepest_ascent(torch.tensor([[3.0, -2.0, 1.0, 0.5]]), 0.5)
        tensor([[ 0.5000, -0.5000,  0.0000,  0.0000]])
        >>> l1_steepest_ascent(torch.tensor([[3.0, -2.0, 1.0, 0.5]]), 0.5, point=torch.tensor([[1.0, 0.5, 0.5, 0.5]]))
        tensor([[ 0.0000, -0.5000,  0.5000,  0.0000]])
    """
    flat = grad.flatten(1)
    dims = flat.shape[1]
    movable = flat != 0
    if point is not None:
        inside = point.flatten(1)
        movable &= ~(((inside <= 0) & (flat < 0)) | ((inside >= 1) & (flat > 0)))
    fraction = torch.as_tensor(sparsity, dtype=torch.float64, device=grad.device).expand(flat.shape[0])
    k = (fraction * dims).round().clamp(1, dims).to(torch.int64)
    order = torch.where(movable, flat.abs(), -1.0).argsort(dim=1, descending=True)
    top = torch.arange(dims, device=grad.device)[None, :] < k[:, None]
    chosen = torch.zeros_like(movable).scatter(1, order, top) & movable
    direction = flat.sign() * chosen
    return (direction / chosen.sum(dim=1, keepdim=True).clamp_min(1)).view_as(grad)
