"""Carlini–Wagner L2 / L∞: exactness on a linear model, invariants, and a comparison with torchattacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustlit.attacks._common import margin_loss
from robustlit.attacks.cw import CWL2, CWLinf, cw_l2, cw_linf
from robustlit.attacks.pgd import pgd
from tests.nets import assert_attack_leaves_model_untouched, small_cnn


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


@pytest.fixture(scope="module")
def batch():
    """Random images labelled with the MLP's own predictions, so every point starts correctly classified."""
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, _mlp()(x).argmax(1)


def _l2(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_adv - x).flatten(1).norm(dim=1)


def test_linear_model_gives_the_distance_to_the_decision_boundary():
    """For logits Wx + b the minimal L2 perturbation is min_j (z_y − z_j) / ‖w_y − w_j‖ (box inactive here)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = 0.5 + 0.05 * (torch.rand(8, 1, 4, 4) - 0.5)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    weight = model[1].weight.detach()
    gaps = logits.gather(1, y[:, None]) - logits
    distances = gaps / (weight[y][:, None, :] - weight[None]).norm(dim=2)
    exact = distances.masked_fill(gaps == 0, float("inf")).amin(dim=1)
    assert (exact < 0.9).all(), "fixture: the boundary must be reachable without hitting the [0, 1] box"
    # 10 search steps also exercise the reference's final rerun at the smallest succeeding constant
    x_adv = cw_l2(model, x, y, c=1e-3, steps=200, binary_search_steps=10)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all()
    ratio = _l2(x_adv, x) / exact
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.05).all(), ratio


def test_successful_points_are_misclassified_and_in_range(batch):
    model = _mlp()
    x, y = batch
    x_adv = cw_l2(model, x, y, c=1.0, steps=40, binary_search_steps=4)
    changed = _l2(x_adv, x) > 0
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    assert changed.any()
    assert (fooled | ~changed).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad


def test_kappa_demands_a_confident_margin(batch):
    model = _mlp()
    x, y = batch
    kappa = 0.05  # the untrained model's logits are about 0.1 apart
    x_adv = cw_l2(model, x, y, c=1.0, kappa=kappa, steps=40, binary_search_steps=4)
    changed = _l2(x_adv, x) > 0
    with torch.no_grad():
        margins = margin_loss(model(x_adv), y)
    assert changed.sum() >= 6 and (margins[changed] > kappa - 1e-5).all()


def test_binary_search_beats_a_fixed_constant(batch):
    model = _mlp()
    x, y = batch
    fixed = cw_l2(model, x, y, c=10.0, steps=40, binary_search_steps=1)
    searched = cw_l2(model, x, y, c=10.0, steps=40, binary_search_steps=5)
    both = (_l2(fixed, x) > 0) & (_l2(searched, x) > 0)
    assert both.sum() >= 6
    assert (_l2(searched, x)[both] <= _l2(fixed, x)[both] + 1e-6).all()
    assert _l2(searched, x)[both].mean() < _l2(fixed, x)[both].mean()


def test_eps_returns_clean_inputs_beyond_the_radius(batch):
    model = _mlp()
    x, y = batch
    unbounded = cw_l2(model, x, y, c=1.0, steps=30, binary_search_steps=3)
    distances = _l2(unbounded, x)
    found = distances[distances > 0].sort().values
    eps = float(found[len(found) // 2 - 1] + found[len(found) // 2]) / 2  # away from any point's distance
    bounded = CWL2(c=1.0, steps=30, binary_search_steps=3, eps=eps)(model, x, y)
    inside = distances <= eps
    assert (~inside).any() and (inside & (distances > 0)).any()
    torch.testing.assert_close(bounded[inside], unbounded[inside], rtol=0, atol=0)
    torch.testing.assert_close(bounded[~inside], x[~inside], rtol=0, atol=0)
    assert (_l2(bounded, x) <= eps + 1e-6).all()


def test_result_does_not_depend_on_batching(batch):
    model = _mlp()
    x, y = batch
    whole = cw_l2(model, x, y, c=1.0, steps=30, binary_search_steps=3)
    pieces = torch.cat(
        [cw_l2(model, x[i : i + 5], y[i : i + 5], c=1.0, steps=30, binary_search_steps=3) for i in range(0, len(x), 5)]
    )
    torch.testing.assert_close(whole, pieces, rtol=0, atol=1e-5)


def test_modes_buffers_and_grads_are_untouched(batch):
    def attack(model):
        cw_l2(model, *batch, c=1.0, steps=5, binary_search_steps=2)
        cw_linf(model, *batch, eps=8 / 255, steps=3)

    assert_attack_leaves_model_untouched(attack)


def test_cw_linf_is_pgd_on_the_margin_loss(batch):
    model = _mlp()
    x, y = batch
    ids = torch.arange(50, 62)
    x_adv = CWLinf(eps=8 / 255, steps=10, seed=3)(model, x, y, sample_ids=ids)
    expected = pgd(model, x, y, eps=8 / 255, steps=10, loss="margin", seed=3, sample_ids=ids)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=0)
    assert ((x_adv - x).abs().amax() <= 8 / 255 + 1e-6) and x_adv.min() >= 0 and x_adv.max() <= 1


def test_bad_arguments_name_the_fix(batch):
    model = small_cnn()
    x, y = batch
    with pytest.raises(ValueError, match="use cw_linf for Linf"):
        cw_l2(model, x, y, norm="Linf")
    with pytest.raises(ValueError, match="use cw_l2"):
        CWLinf(eps=0.1, norm="L2")
    with pytest.raises(ValueError, match="kappa must be non-negative"):
        CWL2(kappa=-1.0)
    with pytest.raises(ValueError, match="c and lr must be positive"):
        cw_l2(model, x, y, c=0.0)
    with pytest.raises(ValueError, match="at least 1"):
        cw_l2(model, x, y, binary_search_steps=0)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        cw_l2(model, x, y, eps=-0.5)


@pytest.mark.slow
def test_matches_or_beats_torchattacks_on_cifar10(shared, cifar10_test_dir):
    """Same c, κ, steps and lr as torchattacks.CW, which keeps c fixed; our binary search can only shrink L2."""
    torchattacks = pytest.importorskip("torchattacks")
    model = torch.jit.load(str(shared("models/smallcnn_std.torchscript.pt"))).eval()
    classes = sorted(p.name for p in cifar10_test_dir.iterdir())
    images, labels = [], []
    for label, name in enumerate(classes):
        path = sorted((cifar10_test_dir / name).iterdir())[0]
        images.append(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1) / 255.0)
        labels.append(label)
    x, y = torch.stack(images), torch.tensor(labels)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]
    assert len(x) >= 7

    theirs = torchattacks.CW(model, c=1.0, kappa=0.0, steps=50, lr=0.01)(x, y)
    ours = cw_l2(model, x, y, c=1.0, kappa=0.0, steps=50, lr=0.01, binary_search_steps=3)
    with torch.no_grad():
        their_fooled = model(theirs).argmax(1) != y
        our_fooled = model(ours).argmax(1) != y
    assert our_fooled.float().mean() >= their_fooled.float().mean()
    assert (our_fooled | (_l2(ours, x) == 0)).all()
    our_median = _l2(ours, x)[our_fooled].median()
    their_median = _l2(theirs, x)[their_fooled].median()
    assert our_median <= their_median * 1.05, (float(our_median), float(their_median))
