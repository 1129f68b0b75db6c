"""Square Attack: score-based random search with square-shaped updates, under L∞ and L2.

Reference: Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020 (the version in fra31/auto-attack).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlit.attacks._common import eval_mode, margin_loss, per_sample_norm
from robustlit.attacks.precision import misclassified
from robustlit.rng import sample_seeds, uniform

SQUARE_NORMS = ("Linf", "L2")

# Iterations (on a 10000-query budget) after which the reference halves the square size p.
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(iteration: int, queries: int, p_init: float = 0.8) -> float:
    """Fraction ``p`` of the image that the square of ``iteration`` covers.

    The reference halves ``p`` after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 iterations of a
    10000-query budget; other budgets rescale the iteration count to that scale first.

    Example:
        >>> [p_schedule(i, 5000) for i in (0, 5, 6, 26, 4001)]
        [0.8, 0.8, 0.4, 0.2, 0.0015625]
    """
    return p_init / 2 ** bisect.bisect_left(_P_HALVINGS, iteration * 10000 // queries)


def square(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    queries: int = 5000,
    p_init: float = 0.8,
    restarts: int = 1,
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """Untargeted Square Attack: maximize the margin loss using only the model's scores.

    Each iteration changes one random square window of the current best point (L∞: the window is set to
    ``x ± ε`` with one random sign per channel; L2: mass moves between two windows, keeping the norm at
    ε) and keeps the change if the margin ``max_{i≠y} z_i − z_y`` grew. A point stops being queried as
    soon as it is misclassified, and points misclassified from the start are never queried again.
    The model runs in eval mode under ``torch.no_grad()``, with its previous modes restored.

    Args:
        model: Any module mapping images ``(N, C, H, W)`` in [0, 1] to logits.
        x: Clean inputs, shape ``(N, C, H, W)``, values in [0, 1].
        y: Labels ``(N,)`` or soft targets ``(N, K)`` (their argmax is the label).
        eps: Radius of the threat model in input units (e.g. ``8/255``).
        norm: ``"Linf"`` or ``"L2"``.
        queries: Random-search iterations per restart, one forward pass each; the initial perturbation
            (L∞: vertical stripes of ±ε; L2: a grid of centred square blocks) costs one more, as in the
            reference.
        p_init: Initial fraction of the image a square covers; halved on the schedule of
            :func:`p_schedule`.
        restarts: Independent restarts; each one only attacks the points still classified correctly.
        seed: Seed of the random search.
        sample_ids: Stable ids of the samples (default ``arange(N)``); each sample draws from its own
            counter-based stream, so results do not depend on batch size or order.

    Returns:
        Adversarial inputs (detached), inside the ε-ball and [0, 1]. Points that could not be fooled
        get the point of highest margin found, or ``x`` when no query beat the clean margin.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> x, y = torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 0])
        >>> x_adv = square(model, x, y, eps=8 / 255, queries=20)
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    if norm not in SQUARE_NORMS:
        raise ValueError(f"square supports norm='Linf' or norm='L2', got norm={norm!r}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if queries < 1 or restarts < 1:
        raise ValueError(f"queries and restarts must be at least 1, got queries={queries}, restarts={restarts}")
    if not 0 < p_init <= 1:
        raise ValueError(f"p_init is a fraction of the image; pass 0 < p_init <= 1, got {p_init}")
    if x.ndim != 4:
        raise ValueError(f"square attacks images shaped (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.detach()
    if eps == 0:
        return x.clone()
    labels = y.argmax(dim=1) if y.ndim == 2 else y
    ids = torch.arange(x.shape[0]) if sample_ids is None else sample_ids
    ids = ids.to(x.device)
    best = x.clone()
    with eval_mode(model), torch.no_grad():
        best_margin = _margin(model, x, labels)
        for restart in range(restarts):
            index = (best_margin <= 0).nonzero().squeeze(1)
            if index.numel() == 0:
                break
            seeds = sample_seeds(seed, ids[index], stream=restart)
            adversarial, margin = _square_run(model, x[index], labels[index], seeds, eps, norm, queries, p_init)
            improved = margin > best_margin[index]
            best[index[improved]] = adversarial[improved]
            best_margin[index[improved]] = margin[improved]
    return best


def _square_run(
    model: nn.Module, x: Tensor, labels: Tensor, seeds: Tensor, eps: float, norm: str, queries: int, p_init: float
) -> tuple[Tensor, Tensor]:
    """One restart from a fresh initial perturbation; returns the best points and their margins."""
    start = _stripes(x, seeds, eps) if norm == "Linf" else _block_grid(x, seeds, eps)
    best = (x + start).clamp(0.0, 1.0)
    margin = _margin(model, best, labels)
    propose = _linf_proposal if norm == "Linf" else _l2_proposal
    for iteration in range(queries):
        active = (margin <= 0).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        p = p_schedule(iteration, queries, p_init)
        # counter 0 drew the initial perturbation
        candidate = propose(x[active], best[active], seeds[active], eps, p, iteration + 1)
        new_margin = _margin(model, candidate, labels[active])
        improved = new_margin > margin[active]
        best[active[improved]] = candidate[improved]
        margin[active[improved]] = new_margin[improved]
    return best, margin


def _margin(model: nn.Module, points: Tensor, labels: Tensor) -> Tensor:
    """The margin loss at ``points``, held at 0 where a reduced-precision model's error is not confirmed.

    A positive margin ends the search for a point, so it has to be a real misclassification (see
    :func:`robustlit.attacks.precision.misclassified`); a point that only looks misclassified stays
    at the boundary, and the search goes on from there.
    """
    logits = model(points)
    margin = margin_loss(logits, labels)
    return torch.where(misclassified(model, logits, points, labels), margin, margin.clamp(max=0.0))


def _signs(draws: Tensor) -> Tensor:
    """±1 from uniform draws."""
    return torch.where(draws < 0.5, -1.0, 1.0)


def _stripes(x: Tensor, seeds: Tensor, eps: float) -> Tensor:
    """L∞ start: every column of every channel gets one random sign, ``±ε`` over its full height."""
    _, c, _, w = x.shape
    return eps * _signs(uniform(seeds, (c, 1, w), dtype=x.dtype))


def _centred_rings(rows: int, cols: int) -> Tensor:
    """Unit-L2 ``rows × cols`` bump: concentric rectangles around the centre, ring k weighted 1/(k+1)²."""
    r = (torch.arange(rows) - rows // 2).abs()
    c = (torch.arange(cols) - cols // 2).abs()
    ring = torch.maximum(r[:, None], c[None, :])
    weights = 1.0 / torch.arange(1, max(rows // 2, cols // 2) + 2, dtype=torch.float64) ** 2
    # a cell lies inside every rectangle from its own ring outwards, so it sums their weights
    inside = weights.flip(0).cumsum(0).flip(0)[ring]
    return inside / inside.norm().clamp_min(1e-12)


def _square_pattern(side: int) -> Tensor:
    """The reference's L2 update shape: a positive bump on the top half, a negative one below, unit norm."""
    pattern = torch.cat([_centred_rings(side // 2, side), -_centred_rings(side - side // 2, side)])
    return pattern / pattern.norm()


def _oriented_patterns(side: int, flip: Tensor, dtype: torch.dtype) -> Tensor:
    """One ``side × side`` pattern per sample, transposed where ``flip`` is true."""
    pattern = _square_pattern(side).to(device=flip.device, dtype=dtype)
    return torch.where(flip[:, None, None], pattern.T, pattern)


def _block_grid(x: Tensor, seeds: Tensor, eps: float) -> Tensor:
    """L2 start: a centred 5 × 5 grid of blocks, each a random-sign pattern per channel, scaled to norm ε."""
    _, c, h, w = x.shape
    side = max(min(h, w) // 5, 1)
    top, left = max((h - 5 * side) // 2, 0), max((w - 5 * side) // 2, 0)
    starts = [(top + i * side, left + j * side) for i in range(5) for j in range(5)]
    starts = [(r, q) for r, q in starts if r + side <= h and q + side <= w]
    draws = uniform(seeds, (len(starts), c + 1), dtype=x.dtype)
    delta = torch.zeros_like(x)
    for block, (r, q) in enumerate(starts):
        patterns = _oriented_patterns(side, draws[:, block, c] < 0.5, x.dtype)
        delta[:, :, r:r + side, q:q + side] += patterns[:, None] * _signs(draws[:, block, :c])[:, :, None, None]
    return delta / per_sample_norm(delta, "L2").clamp_min(1e-12) * eps


def _window(draw_row: Tensor, draw_col: Tensor, side: int, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
    """A random ``side × side`` window per sample: its mask ``(n, 1, h, w)`` and each pixel's offset in it."""
    top = (draw_row * (h - side + 1)).floor().long()
    left = (draw_col * (w - side + 1)).floor().long()
    row = torch.arange(h, device=top.device)[None, :] - top[:, None]
    col = torch.arange(w, device=left.device)[None, :] - left[:, None]
    mask = ((row >= 0) & (row < side))[:, None, :, None] & ((col >= 0) & (col < side))[:, None, None, :]
    return mask, row.clamp(0, side - 1), col.clamp(0, side - 1)


def _linf_proposal(x: Tensor, best: Tensor, seeds: Tensor, eps: float, p: float, counter: int) -> Tensor:
    """Set one random window of ``best`` to a vertex of the ε-ball: ``x ± ε``, one sign per channel."""
    _, c, h, w = x.shape
    side = min(max(round(math.sqrt(p * h * w)), 1), h, w)
    draws = uniform(seeds, (2 + c,), counter, dtype=torch.float64)
    mask, _, _ = _window(draws[:, 0], draws[:, 1], side, h, w)
    vertex = (x + eps * _signs(draws[:, 2:]).to(x.dtype)[:, :, None, None]).clamp(0.0, 1.0)
    return torch.where(mask, vertex, best)


def _l2_proposal(x: Tensor, best: Tensor, seeds: Tensor, eps: float, p: float, counter: int) -> Tensor:
    """Move perturbation mass into one random window from a second one, then rescale to norm ε."""
    n, c, h, w = x.shape
    side = max(round(math.sqrt(p * h * w)), 3)
    # the reference keeps the side odd so that the pattern has a centre pixel
    side = min(side + 1 if side % 2 == 0 else side, h, w)
    draws = uniform(seeds, (5 + c,), counter, dtype=torch.float64)
    mask, row, col = _window(draws[:, 0], draws[:, 1], side, h, w)
    mask_out, _, _ = _window(draws[:, 2], draws[:, 3], side, h, w)
    delta = best - x
    inside = delta * mask
    inside_norm = inside.square().sum(dim=(2, 3), keepdim=True).sqrt()
    total_norm = per_sample_norm(delta, "L2")
    windows_norm = per_sample_norm(delta * (mask | mask_out), "L2")
    patterns = _oriented_patterns(side, draws[:, 4] < 0.5, x.dtype)
    samples = torch.arange(n, device=x.device)[:, None, None]
    placed = patterns[samples, row[:, :, None], col[:, None, :]][:, None] * mask
    update = placed * _signs(draws[:, 5:]).to(x.dtype)[:, :, None, None] + inside / (inside_norm + 1e-12)
    update_norm = update.square().sum(dim=(2, 3), keepdim=True).sqrt()
    # each channel's window takes its share of the unused budget plus the mass of both windows
    budget = ((eps**2 - total_norm.square()).clamp_min(0.0) / c + windows_norm.square()).sqrt()
    delta = torch.where(mask, update / (update_norm + 1e-12) * budget, delta.masked_fill(mask_out, 0.0))
    return (x + delta / per_sample_norm(delta, "L2").clamp_min(1e-12) * eps).clamp(0.0, 1.0)


@dataclass
class Square:
    """Square Attack with fixed settings, callable on any model; see :func:`square` for the arguments.

    Example:
        >>> import torch
        >>> attack = Square(eps=8 / 255, queries=10)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> attack(model, torch.rand(2, 3, 4, 4), torch.tensor([0, 1])).shape
        torch.Size([2, 3, 4, 4])
    """

    eps: float
    norm: str = "Linf"
    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.norm not in SQUARE_NORMS:
            raise ValueError(f"Square supports norm='Linf' or norm='L2', got norm={self.norm!r}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`square`."""
        return square(
            model,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            queries=self.queries,
            p_init=self.p_init,
            restarts=self.restarts,
            seed=self.seed,
            sample_ids=sample_ids,
        )
