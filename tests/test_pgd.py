"""PGD/FGSM invariants, batch-size independence and model-state hygiene."""

from __future__ import annotations

import pytest
import torch

from robustlit.attacks import PGD, fgsm, pgd
from robustlit.attacks._common import margin_loss, project
from tests.nets import assert_attack_leaves_model_untouched, small_cnn


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(24, 3, 8, 8, generator=generator), torch.randint(0, 10, (24,), generator=generator)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_perturbation_stays_in_ball_and_image_range(batch, norm):
    model = small_cnn()
    x, y = batch
    eps = 8 / 255 if norm == "Linf" else 0.5
    x_adv = pgd(model, x, y, eps=eps, steps=10, norm=norm, restarts=2, sample_ids=torch.arange(24))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.isnan(x_adv).any()


def test_attack_restores_modes_and_leaves_buffers_and_grads(batch):
    assert_attack_leaves_model_untouched(lambda model: pgd(model, *batch, eps=8 / 255, steps=3))


def test_pgd_increases_loss_and_beats_fgsm(batch):
    model = small_cnn().eval()
    x, y = batch
    with torch.no_grad():
        clean = margin_loss(model(x), y).mean()
        after_fgsm = margin_loss(model(fgsm(model, x, y, eps=8 / 255)), y).mean()
        after_pgd = margin_loss(model(pgd(model, x, y, eps=8 / 255, steps=20, keep_best=False)), y).mean()
    assert clean < after_fgsm <= after_pgd + 1e-4


def test_flags_do_not_depend_on_batch_size(batch):
    model = small_cnn().eval()
    x, y = batch
    ids = torch.arange(100, 124)
    whole = pgd(model, x, y, eps=16 / 255, steps=5, restarts=2, sample_ids=ids)
    pieces = torch.cat([
        pgd(model, x[i:i + 5], y[i:i + 5], eps=16 / 255, steps=5, restarts=2, sample_ids=ids[i:i + 5])
        for i in range(0, 24, 5)
    ])
    torch.testing.assert_close(whole, pieces)


def test_zero_eps_returns_clean_inputs_and_bad_arguments_fail(batch):
    model = small_cnn()
    x, y = batch
    assert torch.equal(pgd(model, x, y, eps=0.0), x)
    with pytest.raises(ValueError, match="choose one of Linf, L2"):
        pgd(model, x, y, eps=0.1, norm="L7")
    with pytest.raises(ValueError, match="non-negative"):
        pgd(model, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="choose one of ce, margin"):
        PGD(eps=0.1, loss="hinge")(model, x, y)


def test_l2_projection_is_exact():
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    torch.testing.assert_close(project(delta, 1.0, "L2"), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


def test_pgd_breaks_the_standard_cifar_model(shared):
    """The undefended shared CNN has ~0 PGD accuracy at 8/255 (models/README.md: 0.000)."""
    model = torch.jit.load(str(shared("models/smallcnn_std.torchscript.pt"))).eval()
    generator = torch.Generator().manual_seed(0)
    # natural-looking inputs: smooth random images are classified confidently enough to attack
    x = torch.nn.functional.interpolate(torch.rand(32, 3, 8, 8, generator=generator), size=32, mode="bilinear")
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y).float().mean() == 0.0
