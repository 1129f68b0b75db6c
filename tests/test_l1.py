"""The L1 threat model: exact box-constrained projection, sparse steps, and PGD under L1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from robustlit.attacks import l1_projection, l1_steepest_ascent, pgd
from robustlit.attacks._common import per_sample_norm, project, steepest_ascent
from tests.nets import small_cnn


def _bisection_projection(v: torch.Tensor, eps: float, x: torch.Tensor | None) -> torch.Tensor:
    """Reference solution: bisection on the soft threshold λ of one flat vector, in float64."""
    v = v.double()
    room = v.abs() if x is None else torch.where(v >= 0, 1 - x.double(), x.double())

    def mass(lam: float) -> float:
        return float((v.abs() - lam).clamp_min(0).minimum(room).sum())

    low, high = 0.0, float(v.abs().max())
    if mass(low) <= eps:
        return v.sign() * v.abs().minimum(room)
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if mass(middle) > eps else (low, middle)
    return v.sign() * (v.abs() - high).clamp_min(0).minimum(room)


def _random_case(seed: int, n: int = 6, dims: int = 40):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dims, generator=generator, dtype=torch.float64)
    x[:, :5] = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64)  # pixels on the box faces
    v = torch.randn(n, dims, generator=generator, dtype=torch.float64) * torch.rand(n, 1, generator=generator)
    return x, v


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [0.05, 1.0, 4.0])
def test_projection_is_feasible_and_matches_bisection(seed, eps):
    x, v = _random_case(seed)
    projected = l1_projection(v, eps, x)
    assert (projected.abs().sum(1) <= eps + 1e-9).all()
    assert ((x + projected) >= -1e-12).all() and ((x + projected) <= 1 + 1e-12).all()
    expected = torch.stack([_bisection_projection(v[i], eps, x[i]) for i in range(len(v))])
    torch.testing.assert_close(projected, expected, atol=1e-9, rtol=0)
    ball_only = torch.stack([_bisection_projection(v[i], eps, None) for i in range(len(v))])
    torch.testing.assert_close(l1_projection(v, eps), ball_only, atol=1e-9, rtol=0)


def _scipy_projection(v: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """Reference solution by SLSQP, writing δ = p − m with p, m ≥ 0 so that the L1 constraint is linear."""
    d = len(v)

    def delta(z: np.ndarray) -> np.ndarray:
        return z[:d] - z[d:]

    constraints = [
        {"type": "ineq", "fun": lambda z: eps - z.sum()},
        {"type": "ineq", "fun": lambda z: 1 - x - delta(z)},
        {"type": "ineq", "fun": lambda z: x + delta(z)},
    ]
    solved = minimize(lambda z: float((delta(z) - v) @ (delta(z) - v)), np.zeros(2 * d), bounds=[(0, None)] * 2 * d,
                      constraints=constraints, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    assert solved.success, solved.message
    return delta(solved.x)


def test_projection_is_the_closest_feasible_point_by_scipy():
    generator = torch.Generator().manual_seed(7)
    for _ in range(4):
        x = torch.rand(5, generator=generator, dtype=torch.float64)
        v = 0.8 * torch.randn(5, generator=generator, dtype=torch.float64)
        ours = l1_projection(v[None], 0.3, x[None])[0].numpy()
        np.testing.assert_allclose(ours, _scipy_projection(v.numpy(), x.numpy(), 0.3), atol=1e-6)


def test_projection_satisfies_the_optimality_condition():
    # p is the projection of v onto a convex set C iff <v − p, q − p> ≤ 0 for every q in C
    x, v = _random_case(11, n=1, dims=30)
    p = l1_projection(v, 1.5, x)
    generator = torch.Generator().manual_seed(3)
    for _ in range(200):
        q = l1_projection(torch.randn(1, 30, generator=generator, dtype=torch.float64), 1.5, x)
        assert float(((v - p) * (q - p)).sum()) <= 1e-10


def test_projection_is_identity_inside_the_set_and_keeps_shape_and_dtype():
    x = torch.rand(3, 2, 4, 4)
    inside = (torch.rand(3, 2, 4, 4) - 0.5) * 0.02
    inside = (x + inside).clamp(0, 1) - x
    assert torch.equal(l1_projection(inside, 1.0, x), inside)
    out = l1_projection(torch.randn(3, 2, 4, 4), 1.0, x)
    assert out.shape == (3, 2, 4, 4) and out.dtype == torch.float32
    assert torch.equal(l1_projection(torch.randn(2, 5), 0.0), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="non-negative"):
        l1_projection(torch.randn(2, 5), -1.0)


def test_common_helpers_handle_l1():
    delta = torch.tensor([[3.0, -4.0], [0.25, 0.25]])
    assert per_sample_norm(delta, "L1").flatten().tolist() == [7.0, 0.5]
    torch.testing.assert_close(project(delta, 1.0, "L1"), torch.tensor([[0.0, -1.0], [0.25, 0.25]]))
    x = torch.tensor([[0.9, 0.5], [0.5, 0.5]])
    torch.testing.assert_close(project(delta, 1.0, "L1", x), torch.tensor([[0.1, -0.5], [0.25, 0.25]]))
    direction = steepest_ascent(torch.randn(4, 3, 10, 10), "L1")
    torch.testing.assert_close(direction.abs().flatten(1).sum(1), torch.ones(4))
    assert ((direction != 0).flatten(1).sum(1) == 3).all()  # 1% of 300 coordinates


def test_sparse_step_moves_top_k_movable_coordinates():
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(5, 100, generator=generator)
    point = torch.rand(5, 100, generator=generator)
    point[:, :50] = torch.where(grad[:, :50] > 0, 1.0, 0.0)  # the first half is pinned by the box
    sparsity = torch.tensor([0.01, 0.05, 0.1, 0.3, 1.0])
    direction = l1_steepest_ascent(grad, sparsity, point)
    torch.testing.assert_close(direction.abs().sum(1), torch.ones(5))
    assert (direction[:, :50] == 0).all()
    assert (direction != 0).sum(1).tolist() == [1, 5, 10, 30, 50]  # capped by the 50 movable coordinates
    assert ((direction != 0) <= (direction.sign() == grad.sign())).all()
    for row in range(4):
        chosen = direction[row] != 0
        assert grad[row, 50:].abs()[~chosen[50:]].max() <= grad[row][chosen].abs().min()
    assert torch.equal(l1_steepest_ascent(torch.zeros(2, 6), 0.5), torch.zeros(2, 6))


def test_pgd_l1_stays_in_threat_model_raises_loss_and_ignores_batch_size():
    model = small_cnn().eval()
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 3, 8, 8, generator=generator), torch.randint(0, 10, (12,), generator=generator)
    ids = torch.arange(50, 62)
    x_adv = pgd(model, x, y, eps=2.0, norm="L1", steps=10, restarts=2, sample_ids=ids, keep_best=False)
    assert (per_sample_norm(x_adv - x, "L1").flatten() <= 2.0 + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not x_adv.isnan().any()
    loss = nn.CrossEntropyLoss(reduction="none")
    with torch.no_grad():
        assert (loss(model(x_adv), y) > loss(model(x), y)).float().mean() > 0.9
    whole = pgd(model, x, y, eps=2.0, norm="L1", steps=5, restarts=2, sample_ids=ids)
    pieces = torch.cat([
        pgd(model, x[i:i + 5], y[i:i + 5], eps=2.0, norm="L1", steps=5, restarts=2, sample_ids=ids[i:i + 5])
        for i in range(0, 12, 5)
    ])
    torch.testing.assert_close(whole, pieces)
    random_only = pgd(model, x, y, eps=2.0, norm="L1", steps=1, alpha=0.0, sample_ids=ids, keep_best=False)
    assert (per_sample_norm(random_only - x, "L1").flatten() > 0.5).all()  # the random start fills the ball
