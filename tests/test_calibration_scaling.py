"""Adaptive and classwise ECE, temperature scaling, and the calibration suite's rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustlit.metrics import (
    adaptive_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    fit_temperature,
)
from robustlit.suites import CalibrationSuite


def _probs(n: int = 600, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 2
    labels = torch.randint(0, classes, (n,), generator=generator)
    labels[: n // 2] = logits[: n // 2].argmax(1)
    return logits.softmax(1), labels


def test_adaptive_ece_matches_an_equal_mass_reference_and_its_limits():
    probs, labels = _probs()
    confidence, predicted = probs.double().max(1)
    correct = (predicted == labels).double()
    order = np.argsort(confidence.numpy(), kind="stable")
    reference = sum(
        len(part) * abs(correct.numpy()[part].mean() - confidence.numpy()[part].mean())
        for part in np.array_split(order, 10)
    ) / len(order)
    assert adaptive_calibration_error(probs, labels, 10) == pytest.approx(reference, abs=1e-12)
    # one bin: |accuracy − mean confidence|; one sample per bin: mean |correct − confidence|
    assert adaptive_calibration_error(probs, labels, 1) == pytest.approx(abs(float(correct.mean() - confidence.mean())))
    per_sample = float((correct - confidence).abs().mean())
    assert adaptive_calibration_error(probs, labels, len(labels)) == pytest.approx(per_sample)


def test_classwise_ece_matches_a_per_class_loop():
    probs, labels = _probs(classes=3)
    n_bins = 8
    total = 0.0
    for k in range(3):
        p = probs[:, k].double().numpy()
        is_k = (labels == k).double().numpy()
        edges = np.linspace(0, 1, n_bins + 1)
        for b in range(n_bins):
            inside = (p > edges[b]) & (p <= edges[b + 1]) if b else (p <= edges[1])
            if inside.any():
                total += inside.sum() / len(p) * abs(is_k[inside].mean() - p[inside].mean())
    assert classwise_calibration_error(probs, labels, n_bins) == pytest.approx(total / 3, abs=1e-9)
    # a class probability of exactly 1.0 falls in the last bin, as for the top-label ECE
    exact = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert classwise_calibration_error(exact, torch.tensor([0, 1]), 10) == pytest.approx(0.5)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(true_t):
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(20000, 10, generator=generator) * 2.0
    labels = torch.multinomial(base.softmax(1), 1, generator=generator).squeeze(1)  # calibrated at T = 1
    fit = fit_temperature(base * true_t, labels)  # the same logits, mis-scaled by true_t
    assert fit.converged and abs(fit.gradient) <= 1e-6 * fit.nll_after
    assert fit.temperature == pytest.approx(true_t, rel=0.03)
    assert fit.nll_after < fit.nll_before


def test_temperature_scaling_reports_non_convergence_on_separable_data():
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0]] * 10)
    fit = fit_temperature(logits, torch.tensor([0, 1] * 10))  # NLL keeps falling as T → 0
    assert not fit.converged and fit.temperature < 0.2 and fit.nll_after < 1e-6
    with pytest.raises(ValueError, match=r"expected logits \(N, K\) and labels \(N,\)"):
        fit_temperature(torch.zeros(3), torch.zeros(3, dtype=torch.long))


class _Scaled(nn.Module):
    """An image classifier whose logits are ``scale`` times those of a fixed linear model."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 8 * 8, 4)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.linear((x - 0.5).flatten(1) * 4)


def _overconfident_data(n: int = 3000) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 8, 8, generator=generator)
    with torch.no_grad():
        labels = torch.multinomial(_Scaled(1.0)(x).softmax(1), 1, generator=generator).squeeze(1)
    return _Scaled(3.0), [(x[i : i + 500], labels[i : i + 500]) for i in range(0, n, 500)]


def test_suite_fits_temperature_on_the_holdout_and_reports_both_temperatures():
    model, loader = _overconfident_data()
    suite = CalibrationSuite(n_bins=15, holdout_fraction=0.2, target_risks=[0.3])
    metrics = suite.evaluate(model, loader)
    temperature = next(m for m in metrics if m.name == "temperature")
    assert temperature.context["n"] == 600 and temperature.context["converged"]
    assert temperature.value == pytest.approx(3.0, rel=0.15)
    ece = {m.context["temperature"]: m.value for m in metrics if m.name == "ece"}
    assert set(ece) == {1.0, round(temperature.value, 4)}
    assert ece[round(temperature.value, 4)] < 0.05 < ece[1.0]
    names = {m.name for m in metrics}
    assert {"ece", "adaptive_ece", "classwise_ece", "mce", "nll", "brier", "bin_accuracy", "threshold"} <= names
    # the in-domain numbers are those of the 2400 evaluated (non-holdout) samples
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])
    _, evaluated = suite.split_indices(len(y))
    with torch.no_grad():
        probs = model(x[evaluated]).softmax(1)
    assert ece[1.0] == pytest.approx(expected_calibration_error(probs, y[evaluated], 15))
    bins = [m for m in metrics if m.name == "bin_accuracy" and m.context["temperature"] == 1.0]
    assert sum(m.context["count"] for m in bins) == 2400
    assert all(m.context["lo"] < m.context["confidence"] <= m.context["hi"] for m in bins)
    threshold = next(m for m in metrics if m.name == "threshold" and m.context["target_risk"] == 0.3)
    assert 0 < threshold.context["coverage"] < 1 and threshold.context["risk"] <= 0.35


def test_suite_reports_calibration_under_shift_per_severity():
    model, loader = _overconfident_data(600)
    suite = CalibrationSuite(corruptions=["gaussian_noise"], severities=[1, 5], target_risks=[])
    metrics = suite.evaluate(model, loader)
    splits = {m.context["split"] for m in metrics if m.name == "ece"}
    assert splits == {"in_domain", "gaussian_noise/1", "gaussian_noise/5"}
    temperatures = {m.context["temperature"] for m in metrics if m.name == "ece" and m.context["split"] != "in_domain"}
    assert len(temperatures) == 2  # raw and with the in-domain temperature


def test_suite_without_scaling_evaluates_every_sample_and_rejects_bad_options():
    model, loader = _overconfident_data(600)
    metrics = CalibrationSuite(temperature_scaling=False, target_risks=[]).evaluate(model, loader)
    assert not [m for m in metrics if m.name == "temperature"]
    assert sum(m.context["count"] for m in metrics if m.name == "bin_accuracy") == 600
    wrong = [(x, (model(x).argmax(1) + 1) % 4) for x, _ in loader]  # every prediction wrong
    suite = CalibrationSuite(temperature_scaling=False, target_risks=[0.1])
    with pytest.warns(UserWarning, match="no confidence threshold reaches risk <= 0.1"):
        assert not [m for m in suite.evaluate(model, wrong) if m.name == "threshold"]
    assert [w.check for w in suite.warnings] == ["risk_unreachable"]
    with pytest.raises(Exception, match="holdout_fraction must be in"):
        CalibrationSuite(holdout_fraction=1.0)
    with pytest.raises(Exception, match="corruptions \\['fogg'\\] are unknown"):
        CalibrationSuite(corruptions=["fogg"])
