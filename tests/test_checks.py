"""Gradient-masking checks: each fires on a purposely broken model or fixture and stays silent on a sound one."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from robustlit.attacks._common import eval_mode
from robustlit.attacks.checks import (
    MaskingWarning,
    check_monotone_in_eps,
    check_randomness,
    check_softmax_outputs,
    check_square_beats_whitebox,
    check_state_unchanged,
    check_zero_gradients,
    run_checks,
    snapshot_state,
)
from robustlit.attacks.pgd import pgd
from tests.nets import small_cnn


class ForcedDropout(nn.Module):
    """Dropout that ignores eval mode: the classic accidentally randomized model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, p=0.5, training=True)


class Quantize(nn.Module):
    """Rounds its input to 8 levels: piecewise constant, so the input gradient is exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 7) / 7


class Sign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x - 0.5)


class NoGrad(nn.Module):
    """Wraps a model in no_grad: the outputs do not depend differentiably on the input at all."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)


@pytest.fixture(scope="module")
def x():
    return torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own predictions, so every point counts as correctly classified."""
    with eval_mode(model), torch.no_grad():
        return model(x).argmax(1)


def test_sound_model_passes_every_model_check(x):
    model = small_cnn()
    assert run_checks(model, x, _labels(model, x)) == []
    log_probabilities = small_cnn(head=(nn.LogSoftmax(dim=1),))
    assert run_checks(log_probabilities, x, _labels(log_probabilities, x)) == []


def test_randomness_fires_on_dropout_forced_into_training_mode(x):
    model = small_cnn(head=(ForcedDropout(), nn.Linear(10, 10)))
    warnings = check_randomness(model, x)
    assert [w.check for w in warnings] == ["randomness"]
    assert warnings[0].details["max_difference"] > 1e-4 and "version='rand'" in warnings[0].message
    # an ordinary nn.Dropout is switched off by eval mode, even if the model was left in training mode
    assert check_randomness(small_cnn(head=(nn.Dropout(0.5), nn.Linear(10, 10))).train(), x) == []
    with pytest.raises(ValueError, match="at least 2"):
        check_randomness(model, x, n_passes=1)


def test_softmax_outputs_fire_on_probabilities_only(x):
    warnings = check_softmax_outputs(small_cnn(head=(nn.Softmax(dim=1),)), x)
    assert [w.check for w in warnings] == ["softmax_outputs"] and "logits" in warnings[0].message
    assert check_softmax_outputs(small_cnn(), x) == []
    assert check_softmax_outputs(small_cnn(head=(nn.Sigmoid(),)), x) == []  # in [0, 1] but rows do not sum to 1


@pytest.mark.parametrize("broken", [Quantize, Sign], ids=["rounding", "sign"])
def test_zero_gradients_fire_on_piecewise_constant_inputs(x, broken):
    model = small_cnn(broken())
    warnings = check_zero_gradients(model, x, _labels(model, x))
    assert [w.check for w in warnings] == ["zero_gradients"]
    assert warnings[0].details["fraction"] == 1.0 and warnings[0].details["loss"] == "dlr"
    assert "BPDA" in warnings[0].message


def test_zero_gradients_fire_when_forward_runs_without_grad(x):
    model = NoGrad(small_cnn())
    warnings = check_zero_gradients(model, x, _labels(model, x), loss="ce")
    assert warnings[0].details == {
        "loss": "ce",
        "zero_gradient_points": 32,
        "n": 32,
        "fraction": 1.0,
        "threshold": 0.0,
    }


def test_zero_gradients_threshold_and_options(x):
    model = small_cnn()
    y = _labels(model, x)
    assert check_zero_gradients(model, x, y, loss="ce") == []
    assert check_zero_gradients(small_cnn(Quantize()), x, _labels(small_cnn(Quantize()), x), threshold=1.0) == []
    # binary problems have no DLR: cross-entropy is used instead
    binary = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    assert check_zero_gradients(binary, x, _labels(binary, x)) == []
    # misclassified points are not attacked, so they are not checked
    assert check_zero_gradients(small_cnn(Quantize()), x, (_labels(small_cnn(Quantize()), x) + 1) % 10) == []
    with pytest.raises(ValueError, match="choose one of dlr, ce"):
        check_zero_gradients(model, x, y, loss="hinge")


def test_square_check_fires_above_two_tenths_of_a_point():
    whitebox = torch.zeros(1000, dtype=torch.bool)
    whitebox[:500] = True
    after_square = whitebox.clone()
    after_square[:2] = False  # 0.2 pp: tolerated
    assert check_square_beats_whitebox(whitebox, after_square) == []
    after_square[2] = False  # 0.3 pp
    warnings = check_square_beats_whitebox(whitebox, after_square)
    assert [w.check for w in warnings] == ["square_beats_whitebox"]
    details = warnings[0].details
    assert details["square_only_fooled"] == 3 and details["fraction"] == pytest.approx(0.003)
    assert details["whitebox_robust_accuracy"] == 0.5 and details["robust_accuracy_after_square"] == 0.497
    assert "masked" in warnings[0].message
    # the same test on accuracies, e.g. counts summed over batches
    assert check_square_beats_whitebox(0.5, 0.498) == []
    totals = check_square_beats_whitebox(0.5, 0.497)
    assert totals[0].details["fraction"] == pytest.approx(0.003) and "square_only_fooled" not in totals[0].details
    with pytest.raises(ValueError, match="same length"):
        check_square_beats_whitebox(whitebox, after_square[:10])
    with pytest.raises(ValueError, match="both as"):
        check_square_beats_whitebox(whitebox, 0.4)
    with pytest.raises(ValueError, match="boolean"):
        check_square_beats_whitebox(whitebox.float(), after_square.float())


def test_monotone_check_finds_every_increase_in_any_order():
    assert check_monotone_in_eps([0, 2 / 255, 4 / 255, 8 / 255], [0.9, 0.6, 0.45, 0.3]) == []
    assert check_monotone_in_eps([0.1, 0.1], [0.4, 0.5]) == []  # same radius: nothing to compare
    warnings = check_monotone_in_eps([8 / 255, 0, 4 / 255, 2 / 255, 16 / 255], [0.35, 0.9, 0.3, 0.6, 0.4])
    assert [w.check for w in warnings] == ["monotone_in_eps"]
    assert warnings[0].details["increases"] == [(4 / 255, 0.3, 8 / 255, 0.35), (8 / 255, 0.35, 16 / 255, 0.4)]
    assert "2 increases" in warnings[0].message
    assert check_monotone_in_eps([0, 0.1], [0.5, 0.51], tolerance=0.02) == []
    with pytest.raises(ValueError, match="same length"):
        check_monotone_in_eps([0, 0.1], [0.5])


def test_state_check_catches_batchnorm_updates_and_gradients(x):
    model = small_cnn().train()
    before = snapshot_state(model)
    pgd(model, x, _labels(model, x), eps=8 / 255, steps=2)
    run_checks(model, x, _labels(model, x))
    assert check_state_unchanged(before, snapshot_state(model)) == []
    assert model.training

    model(x)  # a forward pass in training mode updates the running statistics
    warnings = check_state_unchanged(before, snapshot_state(model))
    assert warnings[0].details["changed"] == ["1.num_batches_tracked", "1.running_mean", "1.running_var"]
    assert "eval_mode" in warnings[0].message

    model.eval()(x).sum().backward()  # .backward() writes parameter gradients
    changed = check_state_unchanged(before, snapshot_state(model))[0].details["changed"]
    assert "0.weight.grad" in changed and "5.bias.grad" in changed


def test_state_check_treats_nan_as_unchanged_and_names_missing_keys():
    assert check_state_unchanged({"w": torch.tensor([math.nan, 1.0])}, {"w": torch.tensor([math.nan, 1.0])}) == []
    warnings = check_state_unchanged({"w": torch.zeros(2)}, {"w": torch.zeros(3), "v": torch.zeros(1)})
    assert warnings[0].details["changed"] == ["v", "w"]


def test_warnings_print_their_check():
    assert str(MaskingWarning("randomness", "outputs differ", {})) == "randomness: outputs differ"
