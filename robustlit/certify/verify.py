"""Verified robustness under L∞ with IBP, CROWN-IBP or CROWN: margin bounds, verified error and certificates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustlit.attacks import eval_mode
from robustlit.certify.crown import linear_bound, propagate
from robustlit.certify.ibp import elide, margin_spec
from robustlit.certify.result import DETERMINISTIC, CertifiedResult

METHODS = ("ibp", "crown-ibp", "crown")


def margin_lower_bounds(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, methods: Sequence[str] = ("ibp",)
) -> dict[str, Tensor]:
    """Lower bounds of the margins ``f_y − f_i`` over the ε-ball, per method (IBP and CROWN-IBP share one pass).

    Args:
        model: A model built from supported layers, used in its current mode.
        x: Clean inputs in [0, 1].
        y: Labels ``(N,)``.
        eps: L∞ radius.
        methods: Any of ``"ibp"``, ``"crown-ibp"``, ``"crown"``.

    Returns:
        Method → ``(N, K)`` lower bounds, 0 in the true class's column.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> bounds = margin_lower_bounds(net, torch.rand(2, 1, 2, 2), torch.tensor([0, 2]), 0.0, ["ibp"])
        >>> bounds["ibp"].shape
        torch.Size([2, 3])
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown verification methods {unknown}; choose from {', '.join(METHODS)}")
    results: dict[str, Tensor] = {}
    if "ibp" in methods or "crown-ibp" in methods:
        run = propagate(model, x, eps, "ibp")
        spec = margin_spec(y, run.output.lower.shape[1]).to(x.dtype)
        if "ibp" in methods:
            results["ibp"] = elide(run, spec)
        if "crown-ibp" in methods:
            results["crown-ibp"] = linear_bound(run, spec)
    if "crown" in methods:
        run = propagate(model, x, eps, "crown")
        results["crown"] = linear_bound(run, margin_spec(y, run.output.lower.shape[1]).to(x.dtype))
    return results


def verified(margin_lower: Tensor, y: Tensor) -> Tensor:
    """Samples whose margin over every other class is provably positive.

    Example:
        >>> verified(torch.tensor([[0.0, 0.5], [-0.1, 0.0]]), torch.tensor([0, 1])).tolist()
        [True, False]
    """
    others = margin_lower.scatter(1, y[:, None], float("inf"))
    return (others > 0).all(dim=1)


@torch.no_grad()
def verified_error(model: nn.Module, x: Tensor, y: Tensor, eps: float, method: str = "ibp") -> float:
    """Fraction of samples not verified robust at L∞ radius ``eps`` (clean errors included), in eval mode.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> 0.0 <= verified_error(net, torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long), 0.01) <= 1.0
        True
    """
    with eval_mode(model):
        margins = margin_lower_bounds(model, x, y, eps, [method])[method]
    return 1.0 - float(verified(margins, y).double().mean())


@torch.no_grad()
def certify_linf(model: nn.Module, x: Tensor, eps: Sequence[float], method: str = "ibp") -> CertifiedResult:
    """Deterministic L∞ certificates of the model's predictions at each radius of ``eps``, in eval mode.

    The certified radius of a sample is the largest ε of the list at which its predicted class is verified
    (0 when none is); its prediction is the model's clean prediction.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> result = certify_linf(net, torch.rand(5, 1, 2, 2), [0.001, 0.01])
        >>> result.guarantee, result.norm, result.radius.shape
        ('deterministic', 'Linf', torch.Size([5]))
    """
    with eval_mode(model):
        prediction = model(x).argmax(dim=1)
        radius = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for value in sorted(eps):
            margins = margin_lower_bounds(model, x, prediction, value, [method])[method]
            radius = torch.where(verified(margins, prediction), torch.full_like(radius, value), radius)
    return CertifiedResult(method, "Linf", DETERMINISTIC, prediction, radius)
