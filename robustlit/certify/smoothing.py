"""Randomized smoothing (Cohen et al., "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019).

The smoothed classifier ``g(x) = argmax_c P(f(x + δ) = c)``, ``δ ~ N(0, σ²I)``, is certified in L2 by
Monte Carlo: ``n0`` draws select the top class, ``n`` fresh draws bound its probability from below with
a one-sided Clopper–Pearson interval at level ``α``, and the radius is ``σ·Φ⁻¹(p̲A)``. The guarantee is
probabilistic: each certificate is wrong with probability at most ``α``.

Noise is added to the inputs in [0, 1] (before the model's own normalization) and is not clipped.
Draw ``j`` of sample ``i`` comes from a counter-based stream keyed by ``(seed, sample_ids[i], j)``, so
results do not depend on the batch size or on which other samples share the batch.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from robustlit.attacks import eval_mode
from robustlit.certify.result import ABSTAIN, CertifiedResult, probabilistic
from robustlit.rng import hash32, normal, sample_seeds

_SELECTION, _ESTIMATION, _PREDICTION = 0, 1, 2  # independent noise streams of one sample
_DRAW_KEY = 0x9E3779B9


def clopper_pearson_lower(successes: Tensor | np.ndarray | int, trials: int, alpha: float) -> np.ndarray:
    """One-sided ``(1 − alpha)`` Clopper–Pearson lower confidence bound of a binomial proportion.

    Args:
        successes: Success counts.
        trials: Number of trials.
        alpha: Error probability of the bound.

    Returns:
        ``Beta.ppf(alpha, k, n − k + 1)``, and 0 where ``k = 0``.

    Example:
        >>> round(float(clopper_pearson_lower(100000, 100000, 0.001)), 8)
        0.99993092
    """
    k = np.asarray(successes.cpu() if isinstance(successes, Tensor) else successes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(alpha, np.maximum(k, 1e-300), trials - k + 1)
    return np.where(k > 0, bound, 0.0)


def _check(sigma: float, alpha: float, **counts: int) -> None:
    if sigma <= 0:
        raise ValueError(f"randomized smoothing needs sigma > 0, got {sigma}")
    if not 0 < alpha < 1:
        raise ValueError(f"randomized smoothing needs 0 < alpha < 1, got {alpha}")
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"randomized smoothing needs {name} >= 1, got {value}")


@torch.no_grad()
def smoothing_counts(
    model: nn.Module,
    x: Tensor,
    *,
    sigma: float,
    num: int,
    seed: int = 0,
    sample_ids: Tensor | None = None,
    stream: int = 0,
    batch_size: int = 1000,
) -> Tensor:
    """How often the base classifier predicts each class on ``num`` noisy copies of each input.

    Args:
        model: Base classifier mapping inputs in [0, 1] to logits (run in eval mode).
        x: Inputs ``(N, ...)``.
        sigma: Noise standard deviation in input units.
        num: Noise draws per input.
        seed: Run seed of the noise streams.
        sample_ids: Stable ids of the samples (default ``0..N-1``).
        stream: Separates independent uses (selection, estimation, prediction).
        batch_size: Noisy images per forward pass.

    Returns:
        ``(N, K)`` int64 counts.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> smoothing_counts(model, torch.zeros(4, 3), sigma=0.5, num=10).sum(dim=1).tolist()
        [10, 10, 10, 10]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = x.shape[0]
    ids = torch.arange(n, device=x.device) if sample_ids is None else sample_ids.to(x.device)
    seeds = sample_seeds(seed, ids, stream=stream)
    counts: Tensor | None = None
    rows = min(n, batch_size)
    per_row = max(1, batch_size // rows)
    with eval_mode(model):
        for start in range(0, n, rows):
            chunk = slice(start, min(start + rows, n))
            inputs, chunk_seeds = x[chunk], seeds[chunk]
            for first in range(0, num, per_row):
                draws = torch.arange(first, min(first + per_row, num), device=x.device)
                keys = hash32(chunk_seeds[:, None] ^ hash32(draws[None, :] + _DRAW_KEY)).flatten()
                noise = normal(keys, inputs.shape[1:], dtype=x.dtype).mul_(sigma)
                noisy = inputs.repeat_interleave(len(draws), dim=0) + noise
                logits = model(noisy)
                if counts is None:
                    counts = torch.zeros((n, logits.shape[1]), dtype=torch.int64, device=x.device)
                predictions = logits.argmax(dim=1).view(inputs.shape[0], len(draws))
                counts[chunk].scatter_add_(1, predictions, torch.ones_like(predictions))
    assert counts is not None
    return counts


def predict_from_counts(counts: Tensor, alpha: float) -> Tensor:
    """Cohen et al.'s PREDICT decision from the counts of one set of noise draws.

    The top class if a two-sided binomial test of the top two counts rejects equality at level
    ``alpha``, else :data:`ABSTAIN`.

    Example:
        >>> predict_from_counts(torch.tensor([[60, 40, 0], [0, 90, 10]]), alpha=0.05).tolist()
        [-1, 1]
    """
    top = counts.topk(2, dim=1)
    predictions = torch.full((counts.shape[0],), ABSTAIN, dtype=torch.int64)
    for i, (first, second) in enumerate(top.values.tolist()):
        if stats.binomtest(first, first + second, 0.5).pvalue <= alpha:
            predictions[i] = int(top.indices[i, 0])
    return predictions.to(counts.device)


def certify_from_counts(
    selection_counts: Tensor, counts: Tensor, sigma: float, alpha: float
) -> tuple[Tensor, Tensor]:
    """Cohen et al.'s CERTIFY decision from selection and estimation counts.

    Returns:
        Predictions (:data:`ABSTAIN` where ``p̲A < 0.5``) and L2 radii ``σ·Φ⁻¹(p̲A)`` (0 when abstaining).

    Example:
        >>> prediction, radius = certify_from_counts(torch.tensor([[0, 100]]), torch.tensor([[0, 100000]]), 0.12, 0.001)
        >>> prediction.tolist(), round(float(radius), 6)
        ([1], 0.457375)
    """
    top = selection_counts.argmax(dim=1)
    n = int(counts[0].sum()) if counts.numel() else 0
    n_a = counts.gather(1, top[:, None]).squeeze(1)
    p_lower = clopper_pearson_lower(n_a, n, alpha)
    radius = torch.from_numpy(sigma * stats.norm.ppf(np.clip(p_lower, 0.5, None)))
    abstain = torch.from_numpy(p_lower < 0.5)
    prediction = torch.where(abstain, torch.full_like(top.cpu(), ABSTAIN), top.cpu())
    return prediction.to(counts.device), torch.where(abstain, 0.0, radius).to(torch.float64)


def smoothed_predict(
    model: nn.Module,
    x: Tensor,
    *,
    sigma: float,
    n: int = 100_000,
    alpha: float = 0.001,
    seed: int = 0,
    sample_ids: Tensor | None = None,
    batch_size: int = 1000,
) -> Tensor:
    """Predictions of the smoothed classifier (Cohen et al.'s PREDICT).

    Abstains (:data:`ABSTAIN`) when the top class is not significantly ahead; a wrong non-abstained
    answer happens with probability at most ``alpha``.

    Example:
        >>> model = nn.Linear(2, 2)
        >>> smoothed_predict(model, torch.zeros(3, 2), sigma=0.25, n=100).shape
        torch.Size([3])
    """
    _check(sigma, alpha, n=n)
    counts = smoothing_counts(model, x, sigma=sigma, num=n, seed=seed, sample_ids=sample_ids,
                              stream=_PREDICTION, batch_size=batch_size)
    return predict_from_counts(counts, alpha)


def smoothed_certify(
    model: nn.Module,
    x: Tensor,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    seed: int = 0,
    sample_ids: Tensor | None = None,
    batch_size: int = 1000,
) -> CertifiedResult:
    """Certify the smoothed classifier in L2 around each input (Cohen et al.'s CERTIFY).

    Args:
        model: Base classifier mapping inputs in [0, 1] to logits.
        x: Inputs ``(N, ...)`` in [0, 1].
        sigma: Noise standard deviation in input units (0.25 is the common CIFAR setting).
        n0: Selection draws (100 in the paper).
        n: Estimation draws (100 000 in the paper).
        alpha: Failure probability of each certificate (0.001 in the paper).
        seed: Run seed of the noise streams.
        sample_ids: Stable ids of the samples (default ``0..N-1``).
        batch_size: Noisy images per forward pass.

    Returns:
        A :class:`CertifiedResult` with guarantee ``"probabilistic(alpha)"``.

    Example:
        >>> model = nn.Linear(2, 2)
        >>> result = smoothed_certify(model, torch.zeros(3, 2), sigma=0.25, n0=10, n=100)
        >>> result.guarantee, result.norm
        ('probabilistic(0.001)', 'L2')
    """
    _check(sigma, alpha, n0=n0, n=n)
    options = {"sigma": sigma, "seed": seed, "sample_ids": sample_ids, "batch_size": batch_size}
    selection = smoothing_counts(model, x, num=n0, stream=_SELECTION, **options)
    counts = smoothing_counts(model, x, num=n, stream=_ESTIMATION, **options)
    prediction, radius = certify_from_counts(selection, counts, sigma, alpha)
    return CertifiedResult("smoothing", "L2", probabilistic(alpha), prediction, radius)
