"""Randomized smoothing: Clopper–Pearson and binomial-test fixtures, coverage on a linear classifier, noise streams."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from robustlit.certify import (
    ABSTAIN,
    CertifiedResult,
    certify_from_counts,
    clopper_pearson_lower,
    predict_from_counts,
    probabilistic,
    smoothed_certify,
    smoothed_predict,
    smoothing_counts,
)
from robustlit.models.layers import Normalize

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_clopper_pearson_fixtures_at_alpha_0001():
    assert float(clopper_pearson_lower(100000, 100000, 0.001)) == pytest.approx(0.99993092, abs=5e-9)
    assert float(clopper_pearson_lower(90000, 100000, 0.001)) == pytest.approx(0.897036, abs=5e-7)
    prediction, radius = certify_from_counts(torch.tensor([[0, 100]]), torch.tensor([[0, 100000]]), 1.0, 0.001)
    assert prediction.tolist() == [1] and float(radius) == pytest.approx(3.8115, abs=5e-5)
    _, radius = certify_from_counts(torch.tensor([[0, 100]]), torch.tensor([[0, 100000]]), 0.12, 0.001)
    assert float(radius) == pytest.approx(0.457375, abs=5e-7)
    prediction, radius = certify_from_counts(torch.tensor([[3, 97]]), torch.tensor([[49, 51]]), 0.25, 0.001)
    assert prediction.tolist() == [ABSTAIN] and radius.tolist() == [0.0]


@pytest.mark.parametrize(("k", "n", "alpha"), [(7, 10, 0.05), (51, 100, 0.001), (999, 1000, 0.01), (0, 50, 0.01)])
def test_clopper_pearson_is_scipys_exact_interval(k, n, alpha):
    # the one-sided bound at alpha is the lower end of the two-sided exact interval at 1 - 2 alpha
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert float(clopper_pearson_lower(k, n, alpha)) == pytest.approx(expected, abs=1e-12)


def test_binomial_test_of_60_against_40_abstains_at_005():
    assert stats.binomtest(60, 100, 0.5).pvalue == pytest.approx(0.0569, abs=5e-5)
    counts = torch.tensor([[60, 40, 0], [10, 0, 90]])
    assert predict_from_counts(counts, alpha=0.05).tolist() == [ABSTAIN, 2]
    assert predict_from_counts(counts, alpha=0.1).tolist() == [0, 2]


def _binary_linear(dim: int) -> tuple[nn.Linear, torch.Tensor]:
    """Two-class linear model whose decision boundary is w·x + b = 0, with unit-norm w."""
    torch.manual_seed(0)
    model = nn.Linear(dim, 2)
    with torch.no_grad():
        w = torch.randn(dim)
        w /= w.norm()
        model.weight.copy_(torch.stack([-w / 2, w / 2]))
        model.bias.copy_(torch.tensor([0.1, -0.1]))
    return model, w


def test_linear_classifier_radius_exceeds_the_boundary_distance_no_more_often_than_alpha():
    dim, sigma, alpha, per_seed, seeds = 6, 0.5, 0.05, 80, 3
    model, w = _binary_linear(dim)
    generator = torch.Generator().manual_seed(1)
    exceed, trials, ratio = 0, 0, []
    for seed in range(seeds):
        x = torch.randn(per_seed, dim, generator=generator)
        # place points at distances 0.05..0.6 from the boundary w·x - 0.2 = 0, on both sides
        distance = torch.linspace(0.05, 0.6, per_seed)
        side = torch.where(torch.arange(per_seed) % 2 == 0, 1.0, -1.0)
        x = x - ((x @ w) - 0.2)[:, None] * w + (side * distance)[:, None] * w
        result = smoothed_certify(model, x, sigma=sigma, n0=30, n=300, alpha=alpha, seed=seed, batch_size=25000)
        predicted = result.prediction != ABSTAIN
        truth = (x @ w - 0.2 > 0).long()
        assert bool((result.prediction[predicted] == truth[predicted]).all())
        exceed += int((result.radius[predicted] > distance[predicted].double()).sum())
        trials += int(predicted.sum())
        ratio.append(float((result.radius[predicted] / distance[predicted].double()).mean()))
    assert trials >= 0.8 * seeds * per_seed
    # exceedances are Binomial(trials, <= alpha): reject only at the 0.1 % tail
    assert exceed <= stats.binom.ppf(0.999, trials, alpha)
    assert sum(ratio) / len(ratio) > 0.6  # and the radii are not trivially small


def test_noise_is_gaussian_in_input_units_before_the_models_normalization():
    # the model sees (x - 0.5) / 0.1 and predicts class 1 when it is positive: in input space the
    # boundary is x = 0.5, so P(class 1) = Φ((x - 0.5) / σ) when the noise is added to x itself
    model = nn.Sequential(Normalize([0.5], [0.1]), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[2].bias.zero_()
    x = torch.full((1, 1, 1, 1), 0.6)
    sigma, n = 0.25, 20000
    counts = smoothing_counts(model, x, sigma=sigma, num=n, seed=3, batch_size=5000)
    p = stats.norm.cdf(0.1 / sigma)
    assert abs(int(counts[0, 1]) / n - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_counts_do_not_depend_on_batch_size_or_batch_company():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    x = torch.rand(6, 1, 6, 6)
    full = smoothing_counts(model, x, sigma=0.5, num=40, seed=7, batch_size=240)
    small = smoothing_counts(model, x, sigma=0.5, num=40, seed=7, batch_size=7)
    assert torch.equal(full, small)
    subset = smoothing_counts(model, x[3:5], sigma=0.5, num=40, seed=7, sample_ids=torch.tensor([3, 4]))
    assert torch.equal(subset, full[3:5])
    other_seed = smoothing_counts(model, x, sigma=0.5, num=40, seed=8, batch_size=240)
    assert not torch.equal(full, other_seed)


def test_certify_and_predict_return_labelled_results_and_abstain_on_a_coin_flip():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model.bias.zero_()
    x = torch.tensor([[0.0, 0.3], [2.0, 0.0]])  # first point on the boundary, second far from it
    result = smoothed_certify(model, x, sigma=0.25, n0=20, n=400, alpha=0.001)
    assert (result.method, result.norm, result.guarantee) == ("smoothing", "L2", probabilistic(0.001))
    assert result.prediction.tolist() == [ABSTAIN, 0]
    assert result.radius[0] == 0 and result.radius[1] > 0.25
    assert smoothed_predict(model, x, sigma=0.25, n=400, alpha=0.001).tolist() == [ABSTAIN, 0]
    with pytest.raises(ValueError, match="sigma > 0"):
        smoothed_certify(model, x, sigma=0.0)
    with pytest.raises(ValueError, match="n0 >= 1"):
        smoothed_certify(model, x, sigma=0.1, n0=0)


def test_certified_accuracy_counts_abstentions_and_errors_as_not_certified():
    result = CertifiedResult(
        "smoothing",
        "L2",
        probabilistic(0.01),
        torch.tensor([0, 1, ABSTAIN, 2]),
        torch.tensor([0.4, 0.9, 0.0, 0.3], dtype=torch.float64),
    )
    labels = torch.tensor([0, 1, 2, 1])
    assert result.certified_accuracy(labels, [0.0, 0.4, 0.5, 1.0]) == [0.5, 0.5, 0.25, 0.0]
    assert result.abstain_rate == 0.25
    assert result.correct_radius(labels).tolist() == [0.4, 0.9, 0.0, 0.0]
    assert result.median_radius(labels) == 0.0
    with pytest.raises(ValueError, match="CertifiedResult needs"):
        CertifiedResult("ibp", "Linf", "deterministic", torch.tensor([0, 1]), torch.tensor([0.1]))
