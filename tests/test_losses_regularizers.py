"""Loss functions and penalties of the regularizers, against their defining formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustlit.losses import (
    bi_tempered_logistic_loss,
    confidence_penalty,
    entropy,
    exp_t,
    focal_loss,
    huberised_cross_entropy,
    input_gradient_penalty,
    jacobian_penalty,
    js_divergence,
    kl_divergence,
    l1_penalty,
    log_t,
    mart_loss,
    orthogonality_penalty,
    parseval_retraction,
    tempered_softmax,
    trades_loss,
    vat_loss,
)
from robustlit.optim import SGDW

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 1.5], [0.0, 0.0, 0.0]])
ADV = torch.tensor([[1.0, 0.5, 0.0], [0.3, 1.2, 1.0], [-1.0, 1.5, 0.5], [1.0, -1.0, 0.0]])
LABELS = torch.tensor([0, 2, 1, 1])


def test_trades_loss_is_ce_plus_beta_kl():
    expected = F.cross_entropy(LOGITS, LABELS) + 6.0 * F.kl_div(
        F.log_softmax(ADV, dim=1), F.softmax(LOGITS, dim=1), reduction="batchmean"
    )
    torch.testing.assert_close(trades_loss(LOGITS, ADV, LABELS, beta=6.0), expected)


def test_mart_loss_matches_its_formula():
    p_adv, p_clean = F.softmax(ADV, dim=1), F.softmax(LOGITS, dim=1)
    expected = torch.tensor(0.0)
    for i, y in enumerate(LABELS.tolist()):
        wrong = max(p_adv[i, k] for k in range(3) if k != y)
        bce = -torch.log(p_adv[i, y]) - torch.log(1 - wrong)
        kl = (p_clean[i] * (p_clean[i].log() - p_adv[i].log())).sum()
        expected = expected + bce + 3.0 * kl * (1 - p_clean[i, y])
    torch.testing.assert_close(mart_loss(ADV, LOGITS, LABELS, beta=3.0), expected / 4, atol=1e-5, rtol=1e-5)


def test_focal_loss_with_gamma_zero_is_ce_and_follows_its_formula():
    torch.testing.assert_close(focal_loss(LOGITS, LABELS, gamma=0.0), F.cross_entropy(LOGITS, LABELS))
    p_true = F.softmax(LOGITS, dim=1).gather(1, LABELS[:, None]).squeeze(1)
    expected = (-(1 - p_true) ** 2 * p_true.log()).mean()
    torch.testing.assert_close(focal_loss(LOGITS, LABELS, gamma=2.0), expected)
    soft = F.one_hot(LABELS, 3).float()
    torch.testing.assert_close(focal_loss(LOGITS, soft, gamma=2.0), expected)


def test_bi_tempered_with_unit_temperatures_is_ce():
    torch.testing.assert_close(bi_tempered_logistic_loss(LOGITS, LABELS, t1=1.0, t2=1.0),
                               F.cross_entropy(LOGITS, LABELS))


@pytest.mark.parametrize("t", [0.5, 0.8, 1.5, 2.0])
def test_tempered_softmax_normalizes_and_is_exp_t_of_shifted_logits(t):
    probs = tempered_softmax(LOGITS, t, num_iters=20)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4), atol=1e-4, rtol=0)
    # probabilities are exp_t(a - λ) for one λ per row: log_t(p) - a is constant over the row's support
    support = probs > 1e-6
    shift = (LOGITS - log_t(probs.clamp_min(1e-30), t))
    for row in range(4):
        values = shift[row][support[row]]
        torch.testing.assert_close(values, values[:1].expand_as(values), atol=1e-3, rtol=0)


def test_log_t_and_exp_t_are_inverse_and_bi_tempered_is_bounded_for_t1_below_one():
    u = torch.tensor([0.2, 1.0, 3.0])
    torch.testing.assert_close(exp_t(log_t(u, 0.7), 0.7), u)
    confident_wrong = torch.tensor([[-50.0, 50.0]])
    bounded = bi_tempered_logistic_loss(confident_wrong, torch.tensor([0]), t1=0.5, t2=1.0)
    # bound for one-hot targets: -log_t1(0) + 1/(2 - t1) = 1/(1 - t1) + ... the loss stays finite and small
    assert float(bounded) <= 1 / (1 - 0.5) + 1.0
    assert float(F.cross_entropy(confident_wrong, torch.tensor([0]))) > 99


def test_huberised_ce_is_piecewise_and_tends_to_ce():
    tau = 4.0
    p = F.softmax(LOGITS, dim=1).gather(1, LABELS[:, None]).squeeze(1)
    expected = torch.where(p > 1 / tau, -p.log(), -tau * p + math.log(tau) + 1).mean()
    torch.testing.assert_close(huberised_cross_entropy(LOGITS, LABELS, tau=tau), expected)
    torch.testing.assert_close(huberised_cross_entropy(LOGITS, LABELS, tau=1e6), F.cross_entropy(LOGITS, LABELS))
    # continuity at p = 1/tau: both branches give log(tau)
    assert math.isclose(-tau * (1 / tau) + math.log(tau) + 1, -math.log(1 / tau))


def test_divergences_and_entropy():
    p = F.softmax(LOGITS, dim=1)
    q = F.softmax(ADV, dim=1)
    torch.testing.assert_close(kl_divergence(LOGITS, ADV), (p * (p.log() - q.log())).sum(1).mean())
    m = (p + q) / 2
    js = ((p * (p.log() - m.log())).sum(1) + (q * (q.log() - m.log())).sum(1)).mean() / 2
    torch.testing.assert_close(js_divergence(LOGITS, ADV), js)
    torch.testing.assert_close(entropy(LOGITS), -(p * p.log()).sum(1))
    torch.testing.assert_close(confidence_penalty(LOGITS), -entropy(LOGITS).mean())
    threshold = 0.9
    torch.testing.assert_close(confidence_penalty(LOGITS, threshold),
                               (threshold - entropy(LOGITS)).clamp_min(0).mean())


def test_parameter_penalties_and_parseval_retraction():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])
    assert float(l1_penalty([w])) == 6.5
    gram = w.T @ w  # tall: the columns are penalized
    torch.testing.assert_close(orthogonality_penalty([w]), ((gram - torch.eye(2)) ** 2).sum())
    wide = w.T.clone()
    torch.testing.assert_close(orthogonality_penalty([wide]), ((wide @ wide.T - torch.eye(2)) ** 2).sum())
    expected = 1.1 * wide - 0.1 * wide @ wide.T @ wide
    parseval_retraction(wide, 0.1)
    torch.testing.assert_close(wide, expected)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    assert float(orthogonality_penalty([q])) < 1e-10


def test_input_gradient_penalty_matches_softmax_regression_gradient():
    torch.manual_seed(0)
    w = torch.randn(3, 5)
    x = torch.randn(4, 5, requires_grad=True)
    logits = x @ w.T
    p = F.softmax(logits, dim=1).detach()
    grads = (p - F.one_hot(LABELS, 3)) @ w  # ∂CE_i/∂x_i = Wᵀ(p_i − y_i)
    torch.testing.assert_close(input_gradient_penalty(logits, x, LABELS), grads.pow(2).sum(1).mean())


def test_jacobian_penalty_is_unbiased_for_a_linear_map():
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, 6, requires_grad=True)
    estimate = jacobian_penalty(x @ w.T, x, num_projections=3000, generator=torch.Generator().manual_seed(0))
    exact = w.pow(2).sum()
    assert abs(float(estimate) / float(exact) - 1) < 0.05
    with pytest.raises(ValueError, match="requires_grad"):
        jacobian_penalty(x.detach() @ w.T, x.detach())


def test_vat_finds_the_most_sensitive_direction_of_a_linear_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3, bias=False)
    x = torch.randn(1, 4)
    logits = model(x)
    eps = 1e-2
    loss = vat_loss(model, x, logits, eps=eps, xi=1e-3, power_iterations=30,
                    generator=torch.Generator().manual_seed(0))
    # KL(p(x) ‖ p(x + r)) ≈ ½ rᵀ H r with H = Wᵀ(diag p − p pᵀ)W: the worst r of norm ε gives ½ ε² λ_max(H)
    p = F.softmax(logits, dim=1)[0].detach()
    w = model.weight.detach()
    hessian = w.T @ (torch.diag(p) - torch.outer(p, p)) @ w
    expected = 0.5 * eps**2 * torch.linalg.eigvalsh(hessian).max()
    assert abs(float(loss.detach()) / float(expected) - 1) < 0.02


def test_sgdw_decouples_weight_decay_from_momentum():
    lr, momentum, decay = 0.1, 0.9, 0.5
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SGDW([w], lr=lr, momentum=momentum, weight_decay=decay)
    grads = [torch.tensor([0.3, 0.1]), torch.tensor([-0.2, 0.4]), torch.tensor([0.5, -0.5])]
    theta, buffer = torch.tensor([1.0, -2.0]), None
    for g in grads:
        w.grad = g.clone()
        opt.step()
        theta = theta * (1 - lr * decay)
        buffer = g.clone() if buffer is None else momentum * buffer + g
        theta = theta - lr * buffer
        torch.testing.assert_close(w.detach(), theta)
    # coupled decay (torch SGD) puts wd·θ into the buffer and differs
    v = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sgd = torch.optim.SGD([v], lr=lr, momentum=momentum, weight_decay=decay)
    for g in grads:
        v.grad = g.clone()
        sgd.step()
    assert not torch.allclose(v.detach(), w.detach())


def test_sgdw_nesterov_matches_formula_and_validates():
    lr, momentum, decay = 0.05, 0.9, 0.1
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = SGDW([w], lr=lr, momentum=momentum, weight_decay=decay, nesterov=True)
    theta, buffer = torch.tensor([2.0]), None
    for g in (torch.tensor([1.0]), torch.tensor([-0.5])):
        w.grad = g.clone()
        opt.step()
        theta = theta * (1 - lr * decay)
        buffer = g.clone() if buffer is None else momentum * buffer + g
        theta = theta - lr * (g + momentum * buffer)
        torch.testing.assert_close(w.detach(), theta)
    with pytest.raises(ValueError, match="nesterov=true needs momentum > 0"):
        SGDW([w], momentum=0.0, nesterov=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: focal_loss(LOGITS, LABELS, gamma=-1), "gamma >= 0"),
        (lambda: bi_tempered_logistic_loss(LOGITS, LABELS, t1=1.5), "0 <= t1 <= 1"),
        (lambda: tempered_softmax(LOGITS, 0.0), "t > 0"),
        (lambda: huberised_cross_entropy(LOGITS, LABELS, tau=1.0), "tau > 1"),
        (lambda: js_divergence(LOGITS), "at least two"),
        (lambda: focal_loss(LOGITS, LABELS, reduction="max"), "choose mean, sum or none"),
    ],
)
def test_losses_validate_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
