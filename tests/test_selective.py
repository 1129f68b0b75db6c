"""Selective prediction metrics on hand fixtures and their invariants, and the suite's rows and plot."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn

from robustlit.metrics import aurc, coverage_at_risk, excess_aurc, optimal_aurc, risk_coverage_curve
from robustlit.suites import SelectiveSuite


def test_risk_coverage_hand_fixture():
    confidence = [0.9, 0.8, 0.7, 0.6, 0.5]
    correct = [True, False, True, True, False]
    curve = risk_coverage_curve(confidence, correct)
    expected = [0 / 1, 1 / 2, 1 / 3, 1 / 4, 2 / 5]
    torch.testing.assert_close(curve.risk, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(curve.coverage, torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0], dtype=torch.float64))
    assert aurc(confidence, correct) == pytest.approx(sum(expected) / 5)
    # best order: three correct first → risks 0, 0, 0, 1/4, 2/5
    assert optimal_aurc(correct) == pytest.approx((1 / 4 + 2 / 5) / 5)
    assert excess_aurc(confidence, correct) == pytest.approx(sum(expected) / 5 - (1 / 4 + 2 / 5) / 5)


def test_ties_use_the_expected_risk_over_orders_of_the_tie():
    # one tie group of 4 with 2 errors: the expected risk is 1/2 at every coverage
    curve = risk_coverage_curve([0.5] * 4, [True, False, True, False])
    torch.testing.assert_close(curve.risk, torch.full((4,), 0.5, dtype=torch.float64))
    # the result does not depend on the order of tied inputs
    assert aurc([0.9, 0.5, 0.5], [True, True, False]) == aurc([0.9, 0.5, 0.5], [True, False, True])


def test_excess_aurc_is_nonnegative_and_zero_for_a_perfect_ranking():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        correct = torch.rand(50, generator=generator) < 0.7
        confidence = torch.rand(50, generator=generator)
        assert excess_aurc(confidence, correct) >= 0
        perfect = correct.double() + 0.1 * torch.rand(50, generator=generator)  # every correct above every error
        assert excess_aurc(perfect, correct) == pytest.approx(0.0, abs=1e-12)


def test_optimal_aurc_tends_to_the_closed_form():
    r = 0.2
    correct = torch.arange(100000) >= r * 100000  # 20% errors
    assert optimal_aurc(correct) == pytest.approx(r + (1 - r) * math.log(1 - r), abs=1e-4)


def test_coverage_at_risk_picks_the_largest_coverage_meeting_the_risk():
    confidence = [0.9, 0.8, 0.7, 0.6, 0.5]
    correct = [True, False, True, True, False]
    chosen = coverage_at_risk(confidence, correct, target_risk=0.3)
    assert (chosen.threshold, chosen.coverage, chosen.risk) == (0.6, 0.8, 0.25)
    assert coverage_at_risk(confidence, correct, 0.0).coverage == 0.2
    none = coverage_at_risk([0.9, 0.8], [False, False], 0.1)
    assert none.coverage == 0.0 and none.threshold == float("inf")
    with pytest.raises(ValueError, match=r"target_risk must be in \[0, 1\]"):
        coverage_at_risk(confidence, correct, 1.5)
    with pytest.raises(ValueError, match="as many confidences"):
        aurc([0.5], [True, False])


def test_selective_suite_rows_and_plot(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.rand(40, 3, 2, 2)
    y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 3  # a quarter wrong
    suite = SelectiveSuite(risks=[0.1, 1.0])
    metrics = {(m.name, m.context.get("risk")): m for m in suite.evaluate(model, [(x[:25], y[:25]), (x[25:], y[25:])])}
    with torch.no_grad():
        confidence, predicted = model(x).softmax(1).max(1)
    assert metrics[("aurc", None)].value == pytest.approx(aurc(confidence, predicted == y))
    assert metrics[("e_aurc", None)].value == pytest.approx(excess_aurc(confidence, predicted == y))
    assert metrics[("coverage_at_risk", 1.0)].value == 1.0
    artifacts = suite.write_artifacts(tmp_path)
    assert [a.name for a in artifacts] == ["selective_risk_coverage.png"]
    with Image.open(artifacts[0].uri) as image:
        assert "Risk-coverage curve of 40 test samples" in image.text["Description"]
