"""APGD-CE/DLR and APGD-T: DLR fixtures, the step-size schedule, invariants, and torchattacks as a peer."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from robustlit.attacks import APGD, APGDT, ATTACKS, apgd, apgd_targeted, dlr_loss, pgd, targeted_dlr_loss
from robustlit.attacks._common import per_sample_norm
from robustlit.attacks.apgd import _checkpoint, _Points, checkpoints
from tests.nets import assert_attack_leaves_model_untouched, small_cnn

EPS = {"Linf": 4 / 255, "L2": 0.25, "L1": 1.0}  # radii at which about a third of the batch stays robust


@pytest.fixture(scope="module")
def batch():
    """Smooth images the small CNN classifies correctly (labels are its predictions), so all are attacked."""
    generator = torch.Generator().manual_seed(1)
    x = nn.functional.interpolate(torch.rand(24, 3, 4, 4, generator=generator), size=8, mode="bilinear")
    with torch.no_grad():
        y = small_cnn(width=16, max_pool=True).eval()(x).argmax(1)
    return x, y


def _robust_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


# --- DLR ---------------------------------------------------------------------------------------


def test_dlr_loss_by_hand():
    logits = torch.tensor([[5.0, 3.0, 1.0, 0.0], [2.0, 6.0, 1.0, 0.0], [1.0, 2.0, 4.0, 3.0]])
    # row 0: y=0 on top, runner-up 3, π3 = 1 -> -(5-3)/(5-1); row 1: y=0 second -> -(2-6)/(6-1);
    # row 2: y=3 second -> -(3-4)/(4-2)
    expected = torch.tensor([-2 / 4, 4 / 5, 1 / 2])
    torch.testing.assert_close(dlr_loss(logits, torch.tensor([0, 0, 3])), expected)
    soft = torch.nn.functional.one_hot(torch.tensor([0, 0, 3]), 4).float()
    torch.testing.assert_close(dlr_loss(logits, soft), expected)
    torch.testing.assert_close(dlr_loss(3 * logits + 7, torch.tensor([0, 0, 3])), expected)  # shift/scale invariant


def test_targeted_dlr_loss_by_hand():
    logits = torch.tensor([[5.0, 3.0, 1.0, 0.0], [1.0, 2.0, 4.0, 3.0]])
    # row 0: y=0, t=2: -(5-1)/(5-(1+0)/2); row 1: y=2, t=0: -(4-1)/(4-(2+1)/2)
    expected = torch.tensor([-4 / 4.5, -3 / 2.5])
    torch.testing.assert_close(targeted_dlr_loss(logits, torch.tensor([0, 2]), torch.tensor([2, 0])), expected)


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="K >= 3"):
        dlr_loss(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="K >= 4"):
        targeted_dlr_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([1, 2]))
    model = small_cnn(width=16, max_pool=True, classes=3).eval()
    with pytest.raises(ValueError, match="at least 4 classes"):
        apgd_targeted(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), eps=0.1, steps=2)


def test_pgd_accepts_the_dlr_loss(batch):
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    x_adv = pgd(model, x, y, eps=8 / 255, steps=5, loss="dlr", keep_best=False)
    with torch.no_grad():
        assert dlr_loss(model(x_adv), y).mean() > dlr_loss(model(x), y).mean()


# --- schedule ----------------------------------------------------------------------------------


def test_checkpoints_follow_the_reference_schedule():
    # p = 0, .22, .41 (+.19), .57 (+.16), .70 (+.13), .80 (+.10), .87 (+.07), .93 (+.06), .99 (+.06), 1.05
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(100, "L2") == checkpoints(100)
    assert checkpoints(100, "L1") == list(range(4, 100, 4))
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9]  # intervals of at least one step
    assert checkpoints(1) == []


def _state(n: int, **values) -> _Points:
    point = torch.zeros(n, 4)
    defaults = {
        "rows": torch.arange(n), "groups": torch.arange(n), "x": point.clone(), "point": point.clone(),
        "previous": point.clone(),
        "grad": torch.zeros(n, 4), "loss": torch.zeros(n), "best_point": torch.ones(n, 4),
        "best_grad": torch.full((n, 4), 2.0), "best_loss": torch.ones(n), "step": torch.ones(n),
        "increases": torch.zeros(n), "best_loss_at_check": torch.zeros(n),
        "reduced_at_check": torch.zeros(n, dtype=torch.bool), "sparsity": torch.full((n,), 0.2),
        "support_at_check": torch.full((n,), 4.0),
    }
    return _Points(**{**defaults, **values})


def test_checkpoint_halves_the_step_and_returns_to_the_best_point_when_progress_stalls():
    # point 0: the loss rose in 10 of 10 steps and the best loss improved -> keep going
    # point 1: the loss rose in only 7 of 10 steps (< 0.75 * 10) -> halve
    # point 2: rose often, but the best loss is where it was at the last checkpoint -> halve
    # point 3: as point 2, but the step was already halved at the last checkpoint -> keep going
    state = _state(
        4, increases=torch.tensor([10.0, 7.0, 10.0, 10.0]), best_loss=torch.tensor([2.0, 2.0, 1.0, 1.0]),
        best_loss_at_check=torch.tensor([1.0, 1.0, 1.0, 1.0]),
        reduced_at_check=torch.tensor([False, False, False, True]),
    )
    _checkpoint(state, eps=0.1, norm="Linf", rho=0.75, interval=10, dims=4)
    assert state.step.tolist() == [1.0, 0.5, 0.5, 1.0]
    assert state.reduced_at_check.tolist() == [False, True, True, False]
    assert state.point[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert state.grad[:, 0].tolist() == [0.0, 2.0, 2.0, 0.0]
    assert state.increases.tolist() == [0.0] * 4
    assert state.best_loss_at_check.tolist() == state.best_loss.tolist()


def test_l1_checkpoint_adapts_sparsity_and_resets_the_step_when_the_support_shrinks():
    best = torch.tensor([[0.1, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]])
    state = _state(2, best_point=best.clone(), step=torch.tensor([0.5, 0.5]), support_at_check=torch.tensor([4.0, 4.0]))
    _checkpoint(state, eps=1.0, norm="L1", rho=0.75, interval=4, dims=4)
    assert state.step.tolist() == [1.0, pytest.approx(0.5 / 1.5)]  # reset to ε / shrunk by 1.5
    torch.testing.assert_close(state.sparsity, torch.tensor([1 / 4 / 1.5, 4 / 4 / 1.5]))
    assert torch.equal(state.point[0], best[0]) and torch.equal(state.point[1], torch.zeros(4))


# --- invariants ----------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
def test_apgd_and_apgd_t_stay_in_the_threat_model(batch, norm):
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    eps = EPS[norm]
    for x_adv in (
        apgd(model, x, y, eps=eps, norm=norm, steps=10, restarts=2),
        apgd(model, x, y, eps=eps, norm=norm, loss="dlr", steps=10),
        apgd_targeted(model, x, y, eps=eps, norm=norm, steps=10, n_target_classes=3),
    ):
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        assert (per_sample_norm(x_adv - x, norm).flatten() <= eps + 1e-5).all()
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert not torch.isnan(x_adv).any()
        assert _robust_accuracy(model, x_adv, y) < 1.0


def test_attack_restores_modes_and_leaves_buffers_and_grads(batch):
    x, y = batch

    def attack(model):
        apgd(model, x, y, eps=8 / 255, steps=3)
        apgd_targeted(model, x, y, eps=8 / 255, steps=3, n_target_classes=2)

    assert_attack_leaves_model_untouched(attack, width=16, max_pool=True)


@pytest.mark.parametrize("norm", ["Linf", "L1"])
def test_results_do_not_depend_on_batch_size(batch, norm):
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    ids = torch.arange(100, 124)
    settings = {"eps": 2 * EPS[norm], "norm": norm, "steps": 8, "sample_ids": ids}
    for attack, extra in ((apgd, {"restarts": 2}), (apgd_targeted, {"n_target_classes": 3})):
        whole = attack(model, x, y, **settings, **extra)
        pieces = torch.cat([
            attack(model, x[i:i + 7], y[i:i + 7], **{**settings, "sample_ids": ids[i:i + 7]}, **extra)
            for i in range(0, 24, 7)
        ])
        torch.testing.assert_close(whole, pieces)
    default_ids = apgd(model, x, y, eps=8 / 255, steps=4)
    torch.testing.assert_close(default_ids, apgd(model, x, y, eps=8 / 255, steps=4, sample_ids=torch.arange(24)))


@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
def test_side_by_side_runs_fool_the_same_points_as_runs_one_after_another(batch, norm):
    """Targets and restarts in one batch find exactly the points the reference's order finds."""
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    for attack, extra in ((apgd, {"restarts": 3}), (apgd_targeted, {"n_target_classes": 3, "restarts": 2})):
        settings = {"eps": EPS[norm], "norm": norm, "steps": 10, **extra}
        together = attack(model, x, y, **settings, parallel=True)
        in_turn = attack(model, x, y, **settings, parallel=False)
        with torch.no_grad():
            robust = model(in_turn).argmax(1) == y
            assert torch.equal(model(together).argmax(1) == y, robust)
        assert 0 < robust.sum() < len(y)  # both outcomes occur, so the comparison means something
        # a robust point ran every run to the end in both orders, so its best iterate is the same
        torch.testing.assert_close(together[robust], in_turn[robust])
        assert (per_sample_norm(together - x, norm).flatten() <= settings["eps"] * (1 + 1e-5)).all()


def test_l1_large_reps_searches_3_then_2_then_1_eps_and_returns_a_point_in_the_eps_ball():
    """The reference's L1 schedule: 30 steps at 3ε, 30 at 2ε, 40 at ε, each stage from the last one's best point."""
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with torch.no_grad():
        linear[1].bias.copy_(torch.tensor([100.0, 0.0, 0.0, 0.0]))  # class 0 wins anywhere in the box
    x, y, eps = torch.full((1, 3, 2, 2), 0.5), torch.tensor([0]), 0.5
    distances = []

    class Spy(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            distances.append(float((z.detach() - x).abs().sum()))
            return linear(z)

    adversarial = apgd(Spy(), x, y, eps=eps, norm="L1", steps=100, large_reps=True)
    clean, first, second, last = distances[0], distances[1:32], distances[32:63], distances[63:]
    assert clean == 0 and len(last) == 41  # one clean pass, then (1 + steps) passes per stage
    assert 2 * eps < max(first) <= 3 * eps + 1e-5
    assert eps < max(second) <= 2 * eps + 1e-5
    assert max(last) <= eps + 1e-5
    assert float((adversarial - x).abs().sum()) <= eps + 1e-5
    with pytest.raises(ValueError, match="schedule for L1"):
        apgd(Spy(), x, y, eps=eps, norm="Linf", large_reps=True)
    with pytest.raises(ValueError, match="steps >= 3"):
        apgd_targeted(Spy(), x, y, eps=eps, norm="L1", steps=2, large_reps=True)


def test_returns_clean_inputs_for_misclassified_points_and_fooling_points_otherwise(batch):
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    wrong = y.clone()
    wrong[:4] = (y[:4] + 1) % 10  # the model already errs on these
    x_adv = apgd(model, x, wrong, eps=16 / 255, steps=10)
    assert torch.equal(x_adv[:4], x[:4])
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != wrong
        loss = nn.functional.cross_entropy(model(x_adv), wrong, reduction="none")
        clean_loss = nn.functional.cross_entropy(model(x), wrong, reduction="none")
    assert fooled[4:].float().mean() > 0.3
    assert (loss[4:][~fooled[4:]] > clean_loss[4:][~fooled[4:]]).all()  # the best point by loss, not the start


def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_budget(batch):
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    ours = _robust_accuracy(model, apgd(model, x, y, eps=4 / 255, steps=20), y)
    plain = _robust_accuracy(model, pgd(model, x, y, eps=4 / 255, steps=20, sample_ids=torch.arange(24)), y)
    assert ours <= plain


def test_targets_are_clamped_and_arguments_validated(batch):
    model = small_cnn(width=16, max_pool=True, classes=5).eval()
    x, _ = batch
    with torch.no_grad():
        y = model(x).argmax(1)
    clamped = apgd_targeted(model, x, y, eps=8 / 255, steps=3, n_target_classes=50)
    torch.testing.assert_close(clamped, apgd_targeted(model, x, y, eps=8 / 255, steps=3, n_target_classes=4))
    assert torch.equal(apgd(model, x, y, eps=0.0), x)
    for bad, match in (({"norm": "L7"}, "choose one of"), ({"eps": -1.0}, "non-negative"),
                       ({"steps": 0}, "at least 1"), ({"rho": 0.0}, "rho")):
        with pytest.raises(ValueError, match=match):
            apgd(model, x, y, **{"eps": 0.1, **bad})
    with pytest.raises(ValueError, match="n_target_classes"):
        apgd_targeted(model, x, y, eps=0.1, n_target_classes=0)
    with pytest.raises(ValueError, match="choose one of ce"):
        APGD(eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="n_target_classes"):
        APGDT(eps=0.1, n_target_classes=0)


def test_registry_and_wrappers_match_the_functions(batch):
    model = small_cnn(width=16, max_pool=True).eval()
    x, y = batch
    ids = torch.arange(24)
    common = {"eps": 8 / 255, "norm": "Linf", "seed": 3, "sample_ids": ids, "steps": 5}
    torch.testing.assert_close(ATTACKS["apgd-ce"](model, x, y, **common), apgd(model, x, y, **common))
    torch.testing.assert_close(ATTACKS["apgd-dlr"](model, x, y, **common), apgd(model, x, y, loss="dlr", **common))
    torch.testing.assert_close(
        ATTACKS["apgd-t"](model, x, y, **common, n_target_classes=2),
        apgd_targeted(model, x, y, **common, n_target_classes=2),
    )
    torch.testing.assert_close(APGD(eps=8 / 255, steps=5, seed=3)(model, x, y, ids), apgd(model, x, y, **common))
    torch.testing.assert_close(
        APGDT(eps=8 / 255, steps=5, n_target_classes=2, seed=3)(model, x, y, ids),
        apgd_targeted(model, x, y, **common, n_target_classes=2),
    )


# --- against torchattacks on the shared FGSM-trained CIFAR-10 model ---------------------------------


@pytest.fixture(scope="module")
def cifar_points(shared, cifar10_test_dir):
    """The first 100 points of the seeded CIFAR-10 test subset and the FGSM-trained SmallCNN."""
    from robustlit.data import ImageFolderDataModule

    model = torch.jit.load(str(shared("models/smallcnn_fgsmat.torchscript.pt"))).eval()
    data = ImageFolderDataModule(cifar10_test_dir, limit_test=100, batch_size=100)
    data.setup("test")
    x, y = next(iter(data.test_dataloader()))[:2]
    return model, x, y


@pytest.mark.slow
def test_apgd_ce_is_at_least_as_strong_as_torchattacks(cifar_points):
    """25 steps instead of the reference's 100 to fit the CPU budget; both attacks get the same budget."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = cifar_points
    began = time.perf_counter()
    ours = _robust_accuracy(model, apgd(model, x, y, eps=8 / 255, steps=25), y)
    middle = time.perf_counter()
    peer = torchattacks.APGD(model, norm="Linf", eps=8 / 255, steps=25, n_restarts=1, loss="ce", seed=0)
    theirs = _robust_accuracy(model, peer(x, y), y)
    print(f"APGD-CE robust accuracy: ours {ours:.3f} ({middle - began:.1f} s), "
          f"torchattacks {theirs:.3f} ({time.perf_counter() - middle:.1f} s)")
    assert ours <= theirs + 0.01  # one point of slack on 100 images
    assert ours < _robust_accuracy(model, x, y) - 0.2


@pytest.mark.slow
def test_apgd_t_is_at_least_as_strong_as_torchattacks(cifar_points):
    """20 steps and 3 target classes instead of 100 and 9, to fit the CPU budget; same budget for both."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = cifar_points
    began = time.perf_counter()
    ours = _robust_accuracy(model, apgd_targeted(model, x, y, eps=8 / 255, steps=20, n_target_classes=3), y)
    middle = time.perf_counter()
    # torchattacks targets the n_classes - 1 runners-up
    peer = torchattacks.APGDT(model, norm="Linf", eps=8 / 255, steps=20, n_restarts=1, n_classes=4, seed=0)
    theirs = _robust_accuracy(model, peer(x, y), y)
    print(f"APGD-T robust accuracy: ours {ours:.3f} ({middle - began:.1f} s), "
          f"torchattacks {theirs:.3f} ({time.perf_counter() - middle:.1f} s)")
    assert ours <= theirs + 0.01
