"""Carlini–Wagner attacks: the minimum-norm L2 attack and the CW-L∞ (PGD on the margin loss) variant.

Reference: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlit.attacks._common import eval_mode, margin_loss
from robustlit.attacks.pgd import pgd

# As in the reference code: an upper bound of 1e10 means "no successful constant yet" (tested as < 1e9).
_NO_UPPER_BOUND = 1e10
_HAS_UPPER_BOUND = 1e9
# Keeps atanh finite for pixels at exactly 0 or 1 (the reference scales by 1 - 1e-6 the same way).
_TANH_SHRINK = 1.0 - 1e-6
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def cw_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    c: float = 1e-3,
    kappa: float = 0.0,
    steps: int = 1000,
    lr: float = 0.01,
    binary_search_steps: int = 9,
    abort_early: bool = True,
    eps: float | None = None,
    norm: str = "L2",
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """Untargeted Carlini–Wagner L2 attack: the smallest L2 perturbation that fools the model.

    For each sample it minimizes ``‖x' − x‖² + c · max(z_y − max_{i≠y} z_i, −κ)`` over
    ``x' = (tanh(w) + 1) / 2`` (so ``x'`` stays in [0, 1]) with Adam on ``w``, starting from
    ``x``. A per-sample binary search tunes ``c``: it starts at ``c`` and is multiplied by 10
    until a first success, then bisected between the largest failing and smallest succeeding
    constant. With ``binary_search_steps >= 10`` the last search step reruns at the smallest
    succeeding constant, as in the reference code. A point counts as fooled when
    ``max_{i≠y} z_i − z_y > κ`` (for ``κ = 0``: misclassified), the reference's test.

    Defaults follow the authors' code (``nn_robust_attacks``): initial ``c`` 1e-3, 9 search steps,
    learning rate 1e-2, confidence 0, early abort on. The reference allows up to 10000 iterations
    per search step; 1000 is the lighter setting many re-implementations use.
    Early abort is per sample (every ``steps // 10`` iterations a sample stops when its objective
    fell by less than 0.01%), which matches the reference run one image at a time and makes the
    result independent of how samples are batched.

    The model runs in eval mode (its previous modes are restored) and gradients are taken with
    ``torch.autograd.grad``, so BatchNorm statistics and parameter gradients are untouched.

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs, shape ``(N, ...)``, values in [0, 1].
        y: Labels ``(N,)`` or soft targets ``(N, K)`` (their argmax is attacked).
        c: Initial trade-off constant between distance and misclassification.
        kappa: Confidence κ ≥ 0: how far past the decision boundary a point must go to count.
        steps: Adam iterations per binary-search step.
        lr: Adam learning rate on ``w``.
        binary_search_steps: Number of constants tried per sample.
        abort_early: Stop a sample's optimization once its objective stalls.
        eps: Optional L2 radius: points whose smallest perturbation is larger come back as ``x``,
            so the result can be scored as a threat-model attack at radius ``eps``.
        norm: Must be ``"L2"``; use :func:`cw_linf` for L∞.
        seed: Accepted for a signature shared by all attacks; CW is deterministic.
        sample_ids: Accepted for a signature shared by all attacks; CW is deterministic.

    Returns:
        Adversarial inputs (detached), same shape and dtype as ``x``: per sample the successful
        point with the smallest L2 distance found; ``x`` itself where the model is already fooled at
        ``x``, where none was found, or where the smallest one lies beyond ``eps``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 1])
        >>> x_adv = cw_l2(model, x, y, c=1.0, steps=50, binary_search_steps=3)
        >>> bool((x_adv >= 0).all() and (x_adv <= 1).all()), x_adv.shape
        (True, torch.Size([2, 1, 2, 2]))
    """
    _check_l2_arguments(norm, c, kappa, steps, lr, binary_search_steps, eps)
    labels = y.argmax(dim=1) if y.ndim == 2 else y
    x = x.detach()
    best = x.clone()
    with eval_mode(model):
        with torch.no_grad():
            # points fooled as they are need no perturbation (the tanh round trip would move them slightly)
            todo = (margin_loss(model(x), labels) <= kappa).nonzero().squeeze(1)
        with torch.enable_grad():
            found, sq_dist = _binary_search(
                model, x[todo], labels[todo], c, kappa, steps, lr, binary_search_steps, abort_early
            )
    if eps is not None:
        too_far = sq_dist.sqrt() > eps
        found[too_far] = x[todo][too_far]
    best[todo] = found
    return best


def _binary_search(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    c: float,
    kappa: float,
    steps: int,
    lr: float,
    binary_search_steps: int,
    abort_early: bool,
) -> tuple[Tensor, Tensor]:
    """Per-sample search over the constant; returns the best points and their squared distances (``inf``: none)."""
    n = x.shape[0]
    w_start = torch.atanh((2.0 * x - 1.0) * _TANH_SHRINK)
    best = x.clone()
    best_sq_dist = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
    const = torch.full((n,), c, dtype=torch.float64, device=x.device)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, _NO_UPPER_BOUND)
    for search_step in range(binary_search_steps):
        if binary_search_steps >= 10 and search_step == binary_search_steps - 1:
            const = upper.clone()
        adversarial, sq_dist = _minimize(model, x, labels, w_start, const, kappa, steps, lr, abort_early)
        improved = sq_dist < best_sq_dist
        best[improved] = adversarial[improved]
        best_sq_dist = torch.minimum(best_sq_dist, sq_dist)
        success = sq_dist < math.inf
        upper = torch.where(success, torch.minimum(upper, const), upper)
        lower = torch.where(success, lower, torch.maximum(lower, const))
        const = torch.where(upper < _HAS_UPPER_BOUND, (lower + upper) / 2, const * 10)
    return best, best_sq_dist


def _minimize(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    w_start: Tensor,
    const: Tensor,
    kappa: float,
    steps: int,
    lr: float,
    abort_early: bool,
) -> tuple[Tensor, Tensor]:
    """One binary-search step: Adam on ``w`` at fixed per-sample ``const``.

    Adam is written out so that each sample can stop on its own (early abort) without the
    optimizer state of the others moving; a fresh state per call mirrors the reference's reset.

    Returns:
        The smallest-distance successful point per sample (``x`` where none) and its squared L2
        distance (``inf`` where none).
    """
    n = x.shape[0]
    w = w_start.clone()
    first_moment = torch.zeros_like(w)
    second_moment = torch.zeros_like(w)
    found = x.clone()
    found_sq_dist = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
    previous_objective = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
    active = torch.arange(n, device=x.device)
    check_every = max(steps // 10, 1)
    beta1, beta2 = _ADAM_BETAS
    for step in range(steps):
        if active.numel() == 0:
            break
        w_active = w[active].requires_grad_(True)
        candidate = (torch.tanh(w_active) + 1.0) / 2.0
        sq_dist = (candidate - x[active]).flatten(1).pow(2).sum(dim=1)
        margin = margin_loss(model(candidate), labels[active])
        objective = sq_dist + const[active].to(x.dtype) * (-margin).clamp_min(-kappa)
        (grad,) = torch.autograd.grad(objective.sum(), w_active)
        with torch.no_grad():
            better = (margin > kappa) & (sq_dist.double() < found_sq_dist[active])
            found[active[better]] = candidate[better]
            found_sq_dist[active[better]] = sq_dist[better].double()
            if abort_early and step % check_every == 0:
                keep = objective <= previous_objective[active] * 0.9999
                previous_objective[active] = objective
                active, w_active, grad = active[keep], w_active[keep], grad[keep]
            first_moment[active] = beta1 * first_moment[active] + (1 - beta1) * grad
            second_moment[active] = beta2 * second_moment[active] + (1 - beta2) * grad.square()
            m_hat = first_moment[active] / (1 - beta1 ** (step + 1))
            v_hat = second_moment[active] / (1 - beta2 ** (step + 1))
            w[active] = w_active - lr * m_hat / (v_hat.sqrt() + _ADAM_EPS)
    return found, found_sq_dist


def _check_l2_arguments(
    norm: str, c: float, kappa: float, steps: int, lr: float, binary_search_steps: int, eps: float | None
) -> None:
    """Raise a ``ValueError`` naming the first bad CW-L2 argument."""
    if norm != "L2":
        raise ValueError(f"cw_l2 attacks the L2 norm only, got norm={norm!r}; use cw_linf for Linf")
    if c <= 0 or lr <= 0:
        raise ValueError(f"c and lr must be positive, got c={c}, lr={lr}")
    if kappa < 0:
        raise ValueError(f"kappa must be non-negative, got {kappa}")
    if steps < 1 or binary_search_steps < 1:
        raise ValueError(
            f"steps and binary_search_steps must be at least 1, got steps={steps}, "
            f"binary_search_steps={binary_search_steps}"
        )
    if eps is not None and eps < 0:
        raise ValueError(f"eps must be non-negative or None, got {eps}")


def cw_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 100,
    alpha: float | None = None,
    norm: str = "Linf",
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """CW-L∞: PGD with a random start that ascends the Carlini–Wagner margin ``max_{i≠y} z_i − z_y``.

    The margin loss does not saturate like cross-entropy on confident points, which makes this a
    useful second white-box attack next to PGD-CE (as in Madry et al. and TRADES evaluations).

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs in [0, 1].
        y: Labels or soft targets.
        eps: L∞ radius in input units (e.g. ``8/255``).
        steps: Gradient steps.
        alpha: Step size; defaults to ``2.5 * eps / steps``.
        norm: Must be ``"Linf"``; for L2 use :func:`cw_l2` or ``pgd(..., norm="L2", loss="margin")``.
        seed: Seed of the random start.
        sample_ids: Stable ids of the samples, as in :func:`robustlit.attacks.pgd`.

    Returns:
        Adversarial inputs (detached) within the ε-ball and [0, 1].

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
        >>> x_adv = cw_linf(model, x, y, eps=8 / 255, steps=5)
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    _check_linf_norm(norm)
    return pgd(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="Linf", loss="margin", seed=seed, sample_ids=sample_ids
    )


def _check_linf_norm(norm: str) -> None:
    """Raise a ``ValueError`` unless ``norm`` is ``"Linf"``."""
    if norm != "Linf":
        raise ValueError(
            f"cw_linf attacks the Linf norm only, got norm={norm!r}; use cw_l2 or pgd(norm='L2', loss='margin')"
        )


@dataclass
class CWL2:
    """Carlini–Wagner L2 with fixed settings, callable on any model; see :func:`cw_l2` for the arguments.

    Example:
        >>> import torch
        >>> attack = CWL2(c=1.0, steps=20, binary_search_steps=2, eps=0.5)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    c: float = 1e-3
    kappa: float = 0.0
    steps: int = 1000
    lr: float = 0.01
    binary_search_steps: int = 9
    abort_early: bool = True
    eps: float | None = None
    norm: str = "L2"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_l2_arguments(self.norm, self.c, self.kappa, self.steps, self.lr, self.binary_search_steps, self.eps)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`cw_l2`."""
        return cw_l2(
            model,
            x,
            y,
            c=self.c,
            kappa=self.kappa,
            steps=self.steps,
            lr=self.lr,
            binary_search_steps=self.binary_search_steps,
            abort_early=self.abort_early,
            eps=self.eps,
            norm=self.norm,
            seed=self.seed,
            sample_ids=sample_ids,
        )


@dataclass
class CWLinf:
    """CW-L∞ with fixed settings, callable on any model; see :func:`cw_linf` for the arguments.

    Example:
        >>> import torch
        >>> attack = CWLinf(eps=8 / 255, steps=10)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    eps: float
    steps: int = 100
    alpha: float | None = None
    norm: str = "Linf"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_linf_norm(self.norm)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`cw_linf`."""
        return cw_linf(
            model,
            x,
            y,
            eps=self.eps,
            steps=self.steps,
            alpha=self.alpha,
            norm=self.norm,
            seed=self.seed,
            sample_ids=sample_ids,
        )
