"""Calibration metrics against torchmetrics, sklearn and hand-computed fixtures."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from robustlit.metrics import (
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)


@pytest.fixture(scope="module")
def predictions():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (2000,), generator=generator)
    labels[:1200] = logits[:1200].argmax(1)  # 60 % + chance accuracy: a realistic, overconfident model
    return logits, labels


@pytest.mark.parametrize("bins", [10, 15])
def test_ece_and_mce_match_torchmetrics_when_no_confidence_is_exactly_one(predictions, bins):
    logits, labels = predictions
    probs = logits.softmax(1)
    assert probs.max() < 1
    ours = expected_calibration_error(probs, labels, bins)
    theirs = multiclass_calibration_error(probs, labels, num_classes=10, n_bins=bins, norm="l1")
    assert ours == pytest.approx(float(theirs), abs=1e-6)
    ours_max = maximum_calibration_error(probs, labels, bins)
    theirs_max = multiclass_calibration_error(probs, labels, num_classes=10, n_bins=bins, norm="max")
    assert ours_max == pytest.approx(float(theirs_max), abs=1e-6)


def test_confidence_one_lands_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.55, 0.45]])
    labels = torch.tensor([0, 1, 0])
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins.counts.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    # last bin: accuracy 1/2 at confidence 1 → gap .5, weight 2/3; bin 6: gap .45, weight 1/3
    assert expected_calibration_error(probs, labels, 10) == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 0.45)
    assert maximum_calibration_error(probs, labels, 10) == pytest.approx(0.5)


def test_bin_edges_are_right_closed():
    probs = torch.tensor([[0.6, 0.4], [0.4, 0.6]])  # confidence exactly on the 0.6 edge
    assert reliability_bins(probs, torch.tensor([0, 1]), n_bins=5).counts.tolist() == [0, 0, 2, 0, 0]


def test_brier_and_nll_fixtures(predictions):
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 1])
    expected = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert brier_score(probs, labels) == pytest.approx(expected)
    logits, labels = predictions
    reference = log_loss(labels.numpy(), logits.softmax(1).double().numpy(), labels=list(range(10)))
    assert negative_log_likelihood(logits, labels) == pytest.approx(reference, rel=1e-6)


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match=r"expected probs \(N, K\) and labels \(N,\)"):
        expected_calibration_error(torch.rand(3), torch.tensor([0, 1, 2]))
