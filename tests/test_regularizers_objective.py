"""Objective-level regularizers on the RobustModule protocol: each step's loss against its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from robustlit.attacks import fgsm
from robustlit.callbacks import (
    MART,
    TRADES,
    VAT,
    AdversarialAugmentation,
    BiTemperedLoss,
    ConfidencePenalty,
    Consistency,
    EntropyMaximization,
    FastAdversarialTraining,
    FocalLoss,
    HuberLoss,
    InputGradientPenalty,
    JacobianPenalty,
)
from robustlit.losses import (
    bi_tempered_logistic_loss,
    entropy,
    focal_loss,
    huberised_cross_entropy,
    input_gradient_penalty,
    jacobian_penalty,
    kl_divergence,
    mart_loss,
    vat_loss,
)
from robustlit.module import StepContext
from tests.regularizer_nets import PlainTinyNet, TinyNet, batch, loader, trainer

EPS = 0.1


def _attached(callback, model=None):
    """Register ``callback`` on a fresh TinyNet in eval mode (no BN updates, so passes are repeatable)."""
    model = model or TinyNet().eval()
    callback.setup(None, model, "fit")
    return model


def _step(model, x, y, seed=1):
    torch.manual_seed(seed)
    return model.robust_step([x, y], 0)["loss"]


def test_trades_step_is_ce_plus_beta_kl_at_the_kl_maximizer():
    callback = TRADES(beta=6.0, eps=EPS, alpha=EPS / 4, steps=5)
    model = _attached(callback)
    x, y = batch()
    loss = _step(model, x, y)
    torch.manual_seed(1)
    x_adv = callback.adversarial_examples(StepContext(module=model, batch_idx=0, inputs=x, targets=y))
    clean, adv = model(x), model(x_adv)
    kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="batchmean")
    torch.testing.assert_close(loss, F.cross_entropy(clean, y) + 6.0 * kl)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    # the attack raised the KL well above that of a random point of the ball
    random_point = (x + EPS * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    assert kl > kl_divergence(clean, model(random_point)).detach()


def test_mart_step_is_the_mart_loss_on_pgd_examples():
    callback = MART(beta=6.0, eps=EPS, alpha=EPS / 4, steps=3)
    model = _attached(callback)
    x, y = batch()
    loss = _step(model, x, y)
    torch.manual_seed(1)
    x_adv, _ = callback.transform(StepContext(module=model, batch_idx=0, inputs=x, targets=y))
    torch.testing.assert_close(loss, mart_loss(model(x_adv), model(x), y, beta=6.0))
    assert 0 < (x_adv - x).abs().max() <= EPS + 1e-6


@pytest.mark.parametrize(
    ("callback", "formula"),
    [
        (FocalLoss(gamma=2.0), lambda z, y: focal_loss(z, y, gamma=2.0)),
        (BiTemperedLoss(t1=0.7, t2=1.3), lambda z, y: bi_tempered_logistic_loss(z, y, t1=0.7, t2=1.3)),
        (HuberLoss(tau=3.0), lambda z, y: huberised_cross_entropy(z, y, tau=3.0)),
    ],
)
def test_base_loss_replacements_take_the_place_of_cross_entropy(callback, formula):
    model = _attached(callback)
    x, y = batch()
    torch.testing.assert_close(_step(model, x, y), formula(model(x), y))
    assert model.registered_names == [callback.name]
    callback.teardown(None, model, "fit")
    torch.testing.assert_close(_step(model, x, y), F.cross_entropy(model(x), y))


def test_only_one_base_loss_can_be_in_place():
    model = _attached(FocalLoss())
    with pytest.raises(ValueError, match="base loss 'focal' is already in place"):
        HuberLoss().setup(None, model, "fit")


def test_confidence_penalty_adds_minus_beta_entropy():
    model = _attached(ConfidencePenalty(weight=0.3))
    x, y = batch()
    logits = model(x)
    torch.testing.assert_close(_step(model, x, y), F.cross_entropy(logits, y) - 0.3 * entropy(logits).mean())


def test_entropy_maximization_uses_off_data_batches_and_leaves_bn_statistics():
    callback = EntropyMaximization(weight=0.5, source="uniform")
    model = TinyNet().train()
    callback.setup(None, model, "fit")
    x, y = batch()
    ctx = StepContext(module=model, batch_idx=0, inputs=x, targets=y)
    ctx.logits = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    term = callback.term(ctx)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.manual_seed(3)
    noise = torch.rand_like(x)
    with torch.no_grad():
        expected = (math.log(3) - entropy(model(noise))).mean()
    torch.testing.assert_close(term.detach(), expected)
    permuted = EntropyMaximization(source="permuted").off_data(x)
    torch.testing.assert_close(permuted.flatten(2).sort(dim=2).values, x.flatten(2).sort(dim=2).values)


def test_input_gradient_penalty_step_and_training():
    model = _attached(InputGradientPenalty(weight=2.0))
    x, y = batch()
    loss = _step(model, x, y)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + 2.0 * input_gradient_penalty(logits, xg, y))
    net = TinyNet()
    start = [p.detach().clone() for p in net.parameters()]
    fit = trainer([InputGradientPenalty(weight=1.0), JacobianPenalty(weight=0.01)], batches=1)
    fit.fit(net, loader())
    assert {"train/reg/input_gradient", "train/reg/jacobian"} <= set(fit.callback_metrics)
    assert any(not torch.equal(a, b) for a, b in zip(start, net.parameters(), strict=True))


def test_jacobian_penalty_step_is_half_the_estimate():
    model = _attached(JacobianPenalty(weight=0.1, num_projections=2))
    x, y = batch()
    loss = _step(model, x, y, seed=5)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    torch.manual_seed(5)
    expected = F.cross_entropy(logits, y) + 0.1 * 0.5 * jacobian_penalty(logits, xg, num_projections=2)
    torch.testing.assert_close(loss, expected)


def test_vat_term_is_the_lds_loss_and_keeps_bn_statistics():
    callback = VAT(weight=1.0, eps=0.5)
    model = TinyNet().train()
    callback.setup(None, model, "fit")
    x, y = batch()
    ctx = StepContext(module=model, batch_idx=0, inputs=x, targets=y)
    ctx.logits = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(2)
    term = callback.term(ctx)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.manual_seed(2)
    expected = vat_loss(model, x, ctx.logits, eps=0.5)
    torch.testing.assert_close(term, expected)
    assert float(term.detach()) > 0


def test_consistency_term_is_kl_to_an_augmented_view():
    callback = Consistency(weight=1.0, padding=2)
    model = _attached(callback)
    x, y = batch()
    torch.manual_seed(4)
    view = callback.augment(x)
    assert not torch.equal(view, x) and view.shape == x.shape
    loss = _step(model, x, y, seed=4)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y) + kl_divergence(model(x), model(view)))


def test_fgsm_rs_stays_in_the_ball_and_n_fgsm_follows_its_formula():
    model = TinyNet().eval()
    x, y = batch()
    ctx = StepContext(module=model, batch_idx=0, inputs=x, targets=y)
    rs, _ = FastAdversarialTraining(eps=EPS, method="fgsm_rs").transform(ctx)
    assert 0 < (rs - x).abs().max() <= EPS + 1e-6
    torch.manual_seed(7)
    noisy_fgsm, _ = FastAdversarialTraining(eps=EPS, method="n_fgsm").transform(ctx)
    torch.manual_seed(7)
    noisy = (x + (2 * torch.rand_like(x) - 1) * 2 * EPS).clamp(0, 1)
    torch.testing.assert_close(noisy_fgsm, fgsm(model, noisy, y, eps=EPS))
    delta = (noisy_fgsm - x).abs()
    assert delta.max() > EPS + 1e-3 and delta.max() <= 3 * EPS + 1e-6  # not projected back to the ε-ball


def test_fast_at_and_adversarial_augmentation_work_on_a_plain_module():
    model = PlainTinyNet()
    trainer([FastAdversarialTraining(eps=EPS, method="n_fgsm")], batches=1).fit(model, loader())
    x, _ = model.seen[0]
    assert 0 < (x - batch(16)[0][:8]).abs().max() <= 3 * EPS + 1e-6
    model = PlainTinyNet()
    trainer([AdversarialAugmentation(eps=EPS, fraction=0.5)], batches=1).fit(model, loader())
    x, y = model.seen[0]
    clean_x, clean_y = batch(16)
    delta = (x - clean_x[:8]).abs().flatten(1).amax(dim=1)
    assert (delta[:4] > 0).all() and (delta[:4] <= EPS + 1e-6).all()
    assert torch.equal(x[4:], clean_x[4:8]) and torch.equal(y, clean_y[:8])


def test_trades_and_focal_train_together_in_a_real_trainer():
    model = TinyNet()
    fit = trainer([TRADES(eps=EPS, steps=2), FocalLoss(gamma=1.0)], batches=2)
    fit.fit(model, loader())
    assert "train/reg/trades" in fit.callback_metrics
    assert model.registered_names == []


def test_loss_terms_refuse_a_plain_module():
    with pytest.raises(MisconfigurationException, match="add robustlit.module.RobustModule to the bases"):
        trainer([TRADES(eps=EPS, steps=1)], batches=1).fit(PlainTinyNet(), loader())


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: TRADES(eps=0), "eps > 0"),
        (lambda: TRADES(norm="L3"), "choose one of Linf"),
        (lambda: MART(steps=0), "steps >= 1"),
        (lambda: MART(beta=-1), "beta >= 0"),
        (lambda: FastAdversarialTraining(method="pgd"), "choose one of fgsm_rs, n_fgsm"),
        (lambda: FastAdversarialTraining(method="fgsm_rs", noise=0.1), "set method=n_fgsm"),
        (lambda: AdversarialAugmentation(fraction=0), "0 < fraction <= 1"),
        (lambda: FocalLoss(gamma=-1), "gamma >= 0"),
        (lambda: BiTemperedLoss(t2=0), "t2 > 0"),
        (lambda: HuberLoss(tau=0.5), "tau > 1"),
        (lambda: ConfidencePenalty(weight=-1), "weight >= 0"),
        (lambda: EntropyMaximization(source="gaussian"), "choose one of uniform, permuted"),
        (lambda: JacobianPenalty(num_projections=0), "num_projections >= 1"),
        (lambda: VAT(eps=0), "eps > 0"),
        (lambda: Consistency(padding=0), "padding >= 1"),
    ],
)
def test_objective_regularizers_validate_arguments(factory, message):
    with pytest.raises(MisconfigurationException, match=message):
        factory()


def test_regularizers_with_extra_passes_train_together_in_a_real_trainer():
    # the synthetic passes of VAT and entropy maximization must not invalidate the training pass's backward
    model = TinyNet()
    fit = trainer([VAT(eps=0.5), EntropyMaximization(), Consistency(padding=2), ConfidencePenalty()], batches=2)
    fit.fit(model, loader())
    logged = {"train/reg/vat", "train/reg/entropy_max", "train/reg/consistency", "train/reg/confidence_penalty"}
    assert logged <= set(fit.callback_metrics)
    assert int(model.net[1].num_batches_tracked) == 4  # training and consistency passes only, two steps
