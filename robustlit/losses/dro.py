"""Distributionally robust objectives: CVaR, χ²-DRO, group DRO, IRMv1 and V-REx (pure PyTorch).

The sample-level objectives return weights ``q`` over the batch (computed without gradient) so that
``Σ q_i ℓ_i`` has the gradient of the worst-case risk (Danskin's theorem).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlit.losses.soft_ce import soft_cross_entropy


@torch.no_grad()
def cvar_weights(losses: Tensor, alpha: float) -> Tensor:
    """Worst-case weights of CVaR at level α: mass ``1/(αn)`` on the largest losses, summing to 1.

    Reference: Rockafellar & Uryasev (2000); Levy et al., "Large-Scale Methods for Distributionally Robust
    Optimization", NeurIPS 2020. ``CVaR_α = Σ q_i ℓ_i`` is the mean of the worst α-fraction of losses
    (a fractional sample at the boundary gets the remaining mass); α = 1 gives the mean.

    Args:
        losses: Per-sample losses ``(n,)``.
        alpha: Fraction of the worst samples, in (0, 1].

    Returns:
        Weights ``(n,)``, non-negative, each at most ``1/(αn)``, summing to 1.

    Example:
        >>> cvar_weights(torch.tensor([1.0, 4.0, 2.0, 3.0]), alpha=0.5).tolist()
        [0.0, 0.5, 0.0, 0.5]
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"CVaR needs 0 < alpha <= 1, got {alpha}")
    n = losses.shape[0]
    order = torch.argsort(losses.detach().float(), descending=True, stable=True)
    cap = 1.0 / (alpha * n)
    mass = torch.clamp(1.0 - cap * torch.arange(n, dtype=torch.float64, device=losses.device), 0.0, cap)
    weights = torch.zeros(n, dtype=torch.float64, device=losses.device)
    weights[order] = mass
    return weights.to(losses.dtype if losses.is_floating_point() else torch.float32)


@torch.no_grad()
def chi_square_weights(losses: Tensor, rho: float, iterations: int = 64) -> Tensor:
    """Worst-case weights in the χ² ball ``½·n·Σ(q_i − 1/n)² ≤ ρ`` around the uniform distribution.

    Reference: Levy et al., NeurIPS 2020 (constrained χ² DRO); the maximizer is
    ``q_i ∝ (ℓ_i − η)₊`` with η found by bisection so that the constraint is tight (or the point
    mass on the largest loss when the ball contains it).

    Args:
        losses: Per-sample losses ``(n,)``.
        rho: Radius ρ ≥ 0 of the ball; 0 gives uniform weights.
        iterations: Bisection steps on η.

    Returns:
        Weights ``(n,)`` on the simplex.

    Example:
        >>> q = chi_square_weights(torch.tensor([0.0, 1.0, 2.0, 3.0]), rho=0.1)
        >>> round(float(0.5 * 4 * ((q - 0.25) ** 2).sum()), 4), bool(q[3] > q[0])
        (0.1, True)
    """
    if rho < 0:
        raise ValueError(f"chi-square DRO needs rho >= 0, got {rho}")
    values = losses.detach().double()
    n = values.shape[0]
    uniform = torch.full_like(values, 1.0 / n)
    spread = float(values.max() - values.min())
    if rho == 0 or spread == 0:
        return uniform.to(losses.dtype)

    def divergence(eta: float) -> tuple[Tensor, float]:
        excess = (values - eta).clamp_min(0)
        q = excess / excess.sum()
        return q, float(0.5 * n * ((q - 1.0 / n) ** 2).sum())

    top = float(values.max())
    if divergence(top - 1e-12 * max(1.0, abs(top)))[1] <= rho:  # the ball holds the point mass
        q = (values == values.max()).double()
        return (q / q.sum()).to(losses.dtype)
    low, high = float(values.min()) - spread, top
    while divergence(low)[1] > rho:
        low -= 2 * (top - low)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if divergence(middle)[1] > rho:
            high = middle
        else:
            low = middle
    return divergence(low)[0].to(losses.dtype)


def group_mean_losses(losses: Tensor, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Mean loss of each group in the batch (0 for a group with no sample) and the group counts.

    Example:
        >>> means, counts = group_mean_losses(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 2]), 3)
        >>> means.tolist(), counts.tolist()
        ([2.0, 0.0, 5.0], [2.0, 0.0, 1.0])
    """
    if groups.min() < 0 or groups.max() >= num_groups:
        raise ValueError(f"group ids must lie in [0, {num_groups}); got {groups.min()}..{groups.max()}")
    one_hot = F.one_hot(groups, num_groups).to(losses.dtype)
    counts = one_hot.sum(dim=0)
    return (one_hot.T @ losses) / counts.clamp_min(1), counts


@torch.no_grad()
def group_dro_update(q: Tensor, group_losses: Tensor, eta: float, adjustment: Tensor | None = None) -> Tensor:
    """One exponentiated-gradient step of group DRO: ``q ← q·exp(η·(ℓ_g + C/√n_g))``, normalized.

    Reference: Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR 2020
    (η = 0.01). An empty group has ``ℓ_g = 0``, so it only moves through the adjustment.

    Args:
        q: Current group weights ``(G,)`` on the simplex.
        group_losses: Mean loss of each group in the batch ``(G,)``.
        eta: Step size η ≥ 0; 0 leaves ``q`` unchanged.
        adjustment: Optional ``C/√n_g`` per group (generalization adjustment, training-set counts ``n_g``).

    Returns:
        The new weights.

    Example:
        >>> group_dro_update(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 3.0]).log(), eta=1.0).tolist()
        [0.25, 0.75]
    """
    adjusted = group_losses.detach().float() + (0 if adjustment is None else adjustment.float())
    weights = q.float() * torch.exp(eta * adjusted)
    return (weights / weights.sum()).to(q.dtype)


def irm_penalty(logits: Tensor, targets: Tensor) -> Tensor:
    """IRMv1 penalty of one environment: the squared gradient of its risk with respect to a scale ``s`` at 1.

    Reference: Arjovsky et al., "Invariant Risk Minimization", 2019: ``(∂/∂s R(s·logits)|_{s=1})²``.
    For cross-entropy the gradient is ``mean(Σ_k softmax_k·z_k − Σ_k y_k z_k)``. The penalty stays
    differentiable in ``logits`` (``create_graph=True``).

    Example:
        >>> float(irm_penalty(torch.zeros(3, 2), torch.tensor([0, 1, 1])))
        0.0
    """
    scale = torch.ones((), device=logits.device, dtype=logits.dtype, requires_grad=True)
    risk = soft_cross_entropy(logits * scale, targets)
    (grad,) = torch.autograd.grad(risk, scale, create_graph=True)
    return grad.pow(2)


def environment_risks(losses: Tensor, environments: Tensor) -> tuple[Tensor, Tensor]:
    """Mean loss of each environment present in the batch, and those environments' ids.

    Example:
        >>> risks, ids = environment_risks(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([4, 4, 2]))
        >>> risks.tolist(), ids.tolist()
        ([5.0, 2.0], [2, 4])
    """
    ids, inverse = torch.unique(environments, return_inverse=True)
    sums = torch.zeros(ids.shape[0], dtype=losses.dtype, device=losses.device).index_add(0, inverse, losses)
    counts = torch.zeros(ids.shape[0], dtype=losses.dtype, device=losses.device).index_add(
        0, inverse, torch.ones_like(losses)
    )
    return sums / counts, ids


def vrex_penalty(risks: Tensor) -> Tensor:
    """V-REx penalty: the population variance of the environments' risks.

    Reference: Krueger et al., "Out-of-Distribution Generalization via Risk Extrapolation (REx)", ICML 2021.
    The objective is ``mean(R_e) + λ·Var(R_e)``; adding a constant to every risk leaves the penalty unchanged.

    Example:
        >>> float(vrex_penalty(torch.tensor([1.0, 3.0])))
        1.0
    """
    return risks.var(unbiased=False) if risks.numel() > 1 else risks.sum() * 0


def vrex_objective(risks: Tensor, penalty_weight: float) -> Tensor:
    """``mean(R_e) + λ·Var(R_e)`` over environment risks ``(E,)``.

    Example:
        >>> float(vrex_objective(torch.tensor([1.0, 3.0]), penalty_weight=2.0))
        4.0
    """
    return risks.mean() + penalty_weight * vrex_penalty(risks)


def irm_objective(logits: Tensor, targets: Tensor, environments: Tensor, penalty_weight: float) -> Tensor:
    """IRMv1: ``Σ_e R_e + λ·Σ_e penalty_e`` averaged over the environments present, divided by λ once λ > 1.

    The division keeps the gradient scale bounded as λ grows, as the reference implementation does.

    Example:
        >>> objective = irm_objective(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0, 1]), 1.0)
        >>> torch.allclose(objective, torch.tensor(2.0).log())
        True
    """
    risks, penalties = [], []
    for environment in torch.unique(environments):
        members = environments == environment
        risks.append(soft_cross_entropy(logits[members], targets[members]))
        penalties.append(irm_penalty(logits[members], targets[members]))
    objective = torch.stack(risks).mean() + penalty_weight * torch.stack(penalties).mean()
    return objective / penalty_weight if penalty_weight > 1 else objective
