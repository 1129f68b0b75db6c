"""Projected gradient descent (PGD) and FGSM under L∞, L2 and L1 constraints.

Reference: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018;
Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlit.attacks._common import check_norm, eval_mode, per_sample_norm, project, resolve_loss, steepest_ascent
from robustlit.attacks.precision import misclassified
from robustlit.rng import normal, sample_seeds, uniform

LossFn = Callable[[Tensor, Tensor], Tensor]


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "Linf",
    random_start: bool = True,
    restarts: int = 1,
    loss: str | LossFn = "ce",
    keep_best: bool = True,
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """Untargeted PGD: maximize ``loss`` inside the ε-ball around ``x``, staying in [0, 1].

    The model runs in eval mode (its previous modes are restored) and gradients are taken with
    ``torch.autograd.grad``, so BatchNorm statistics and parameter gradients are untouched.

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs, shape ``(N, ...)``, values in [0, 1].
        y: Labels ``(N,)`` or soft targets ``(N, K)``.
        eps: Radius of the threat model in input units (e.g. ``8/255``).
        alpha: Step size; defaults to ``2.5 * eps / steps``.
        steps: Gradient steps per restart.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``. L1 steps move the top 1% of the gradient
            coordinates (SLIDE) and project exactly onto the L1 ball intersected with the box.
        random_start: Start from a uniform point of the ball instead of ``x``.
        restarts: Independent restarts; later restarts only attack points still classified correctly.
        loss: ``"ce"``, ``"margin"`` (CW-L∞ style), ``"dlr"`` (Croce & Hein) or a callable
            ``(logits, y) -> per-sample loss``.
        keep_best: Return the first iterate that fooled the model (stronger evaluation); with false,
            return the last iterate (the usual choice for adversarial training).
        seed: Seed of the random starts.
        sample_ids: Stable ids of the samples; when given, each sample's random start comes from its
            own generator, so results do not depend on batch size or order. Without ids the global
            torch RNG is used.

    Returns:
        Adversarial inputs (detached), same shape and dtype as ``x``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> x_adv = pgd(model, x, y, eps=8 / 255, steps=5)
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    check_norm(norm)
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be at least 1, got steps={steps}, restarts={restarts}")
    if eps == 0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if alpha is None else alpha
    loss_fn = resolve_loss(loss)
    labels = y.argmax(dim=1) if y.ndim == 2 else y
    x = x.detach()
    best = x.clone()
    pending = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    with eval_mode(model), torch.enable_grad():
        for restart in range(restarts):
            index = pending.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            start = _random_start(x[index], eps, norm, seed, sample_ids, restart, index) if random_start else None
            adversarial, fooled = _pgd_run(
                model, x[index], y[index], labels[index], start, eps, alpha, steps, norm, loss_fn, keep_best
            )
            best[index] = adversarial
            if restart + 1 < restarts:
                with torch.no_grad():
                    fooled |= misclassified(model, model(adversarial), adversarial, labels[index])
                pending[index[fooled]] = False
    return best


def _pgd_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    labels: Tensor,
    start: Tensor | None,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    loss_fn: LossFn,
    keep_best: bool,
) -> tuple[Tensor, Tensor]:
    """One restart; returns the adversarial inputs and which iterates already fooled the model."""
    delta = torch.zeros_like(x) if start is None else start
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    first_fooling = x.clone()
    if norm == "Linf":  # the ε-ball ∩ the [0, 1] box is one box: a single clamp projects onto it
        lower, upper = (-x).clamp(min=-eps), (1.0 - x).clamp(max=eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(x + delta)
        (grad,) = torch.autograd.grad(loss_fn(logits, y).sum(), delta)
        with torch.no_grad():
            if keep_best:
                newly_fooled = misclassified(model, logits, x + delta, labels) & ~fooled
                first_fooling[newly_fooled] = (x + delta)[newly_fooled]
                fooled |= newly_fooled
            if norm == "Linf":
                delta = delta.detach().add_(grad.sign_(), alpha=alpha).clamp_(lower, upper)
            else:
                delta = project(delta + alpha * steepest_ascent(grad, norm, x + delta), eps, norm, x)
                delta = (x + delta).clamp(0.0, 1.0) - x
    adversarial = (x + delta).detach()
    adversarial[fooled] = first_fooling[fooled]
    return adversarial, fooled


def _random_start(
    x: Tensor, eps: float, norm: str, seed: int, sample_ids: Tensor | None, restart: int, index: Tensor
) -> Tensor:
    """A uniformly random point of the ε-ball (clipped so that ``x + delta`` stays in [0, 1])."""
    shape = x.shape[1:]
    if sample_ids is None:
        noise = torch.randn_like(x) if norm == "L2" else torch.rand_like(x)
        radius_draw = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        if norm == "L1":
            noise = _laplace(noise, torch.rand_like(x))
    else:
        seeds = sample_seeds(seed, sample_ids.to(index.device)[index], stream=restart)
        noise = (normal if norm == "L2" else uniform)(seeds, shape, dtype=x.dtype)
        radius_draw = uniform(seeds, (), counter=2, dtype=x.dtype)  # normal() used counters 0 and 1
        if norm == "L1":
            noise = _laplace(noise, uniform(seeds, shape, counter=1, dtype=x.dtype))
    if norm == "Linf":
        delta = (2.0 * noise - 1.0) * eps
    else:
        dims = math.prod(shape)
        radius = eps * radius_draw.pow(1.0 / dims).view(-1, *([1] * len(shape)))
        delta = noise / per_sample_norm(noise, norm).clamp_min(1e-12) * radius
    return (x + delta).clamp(0.0, 1.0) - x


def _laplace(magnitude_draw: Tensor, sign_draw: Tensor) -> Tensor:
    """Laplace noise from two uniform draws; normalized, it is uniform on the L1 sphere."""
    return -torch.log1p(-magnitude_draw) * torch.where(sign_draw < 0.5, -1.0, 1.0)


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    loss: str | LossFn = "ce",
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """Fast gradient sign method: one full-size step of steepest ascent from ``x``.

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs in [0, 1].
        y: Labels or soft targets.
        eps: Radius (and step size) in input units.
        norm: ``"Linf"`` (FGSM), ``"L2"`` (fast gradient method) or ``"L1"``.
        loss: Loss to ascend, as in :func:`pgd`.
        seed: Accepted for the common attack signature; FGSM draws no random numbers.
        sample_ids: Accepted for the common attack signature.

    Returns:
        Adversarial inputs (detached).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.full((2, 1, 2, 2), 0.5)
        >>> delta = fgsm(model, x, torch.tensor([0, 1]), eps=0.1) - x
        >>> torch.allclose(delta.abs(), torch.full_like(delta, 0.1))
        True
    """
    return pgd(model, x, y, eps=eps, alpha=eps, steps=1, norm=norm, random_start=False, loss=loss, keep_best=False)


@dataclass
class PGD:
    """PGD with fixed settings, callable on any model; see :func:`pgd` for the arguments.

    Example:
        >>> import torch
        >>> attack = PGD(eps=8 / 255, steps=10)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    eps: float
    alpha: float | None = None
    steps: int = 10
    norm: str = "Linf"
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    keep_best: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_norm(self.norm)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`pgd`."""
        return pgd(
            model,
            x,
            y,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            norm=self.norm,
            random_start=self.random_start,
            restarts=self.restarts,
            loss=self.loss,
            keep_best=self.keep_best,
            seed=self.seed,
            sample_ids=sample_ids,
        )
