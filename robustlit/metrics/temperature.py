"""Temperature scaling: one scalar ``T`` that divides the logits, fitted by minimizing held-out NLL.

Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017. ``T`` is parameterized as
``exp(t)`` so it stays positive without constraints, and ``t`` is fitted with L-BFGS (strong-Wolfe line
search) in float64. The fit counts as converged when ``|dNLL/dt| <= tolerance · NLL`` inside the bounds
of ``t``: relative to the NLL, because on separable data both vanish together as ``T → 0`` and a bare
gradient test would accept any small ``T``. The NLL is convex in ``1/T``, so a converged fit is the global
optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class TemperatureFit:
    """The result of :func:`fit_temperature`.

    Attributes:
        temperature: The fitted ``T`` (divide logits by it).
        nll_before: NLL of the fitting logits at ``T = 1``.
        nll_after: NLL of the fitting logits at the fitted ``T``.
        gradient: ``dNLL/d log T`` at the end.
        iterations: L-BFGS iterations used.
        converged: Whether ``|gradient| <= tolerance · nll_after`` with ``log T`` inside its bounds.
    """

    temperature: float
    nll_before: float
    nll_after: float
    gradient: float
    iterations: int
    converged: bool


def fit_temperature(
    logits: Tensor,
    labels: Tensor,
    max_iter: int = 200,
    tolerance: float = 1e-6,
    log_t_bounds: tuple[float, float] = (-5.0, 5.0),
) -> TemperatureFit:
    """Fit ``T = exp(t)`` minimizing the mean NLL of ``softmax(logits / T)`` on held-out data.

    Args:
        logits: Held-out logits ``(N, K)``; never the data the scaled model is evaluated on.
        labels: True classes ``(N,)``.
        max_iter: Largest number of L-BFGS iterations.
        tolerance: Converged when ``|dNLL/dt| <= tolerance · NLL``.
        log_t_bounds: ``t`` is clamped to this range, so separable data (NLL falling forever as
            ``T → 0``) ends at a finite ``T`` reported as not converged.

    Returns:
        The fitted temperature and the fit's diagnostics.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> base = torch.randn(4000, 5, generator=generator) * 2
        >>> labels = torch.multinomial(base.softmax(1), 1, generator=generator).squeeze(1)
        >>> fit = fit_temperature(base * 2.0, labels)  # logits twice too sharp: T ≈ 2
        >>> fit.converged, round(fit.temperature, 1)
        (True, 2.0)
    """
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0] or logits.shape[0] == 0:
        raise ValueError(
            f"expected logits (N, K) and labels (N,) with N >= 1, got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if max_iter < 1 or tolerance <= 0:
        raise ValueError(f"need max_iter >= 1 and tolerance > 0, got {max_iter} and {tolerance}")
    low, high = log_t_bounds
    # Lightning calls this from epoch-end hooks that run under inference mode: leave it and copy the inputs.
    with torch.inference_mode(False), torch.enable_grad():
        logits = logits.detach().to("cpu", torch.float64).clone()
        labels = labels.detach().to("cpu", torch.long).clone()
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.clamp(low, high).exp(), labels)
            loss.backward()
            return loss

        nll_before = float(F.cross_entropy(logits, labels))
        optimizer.step(closure)
        loss = closure()
    gradient = float(log_t.grad)
    nll_after = float(loss.detach())
    iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
    return TemperatureFit(
        temperature=float(log_t.detach().clamp(low, high).exp()),
        nll_before=nll_before,
        nll_after=nll_after,
        gradient=gradient,
        iterations=iterations,
        converged=abs(gradient) <= tolerance * nll_after and low < float(log_t.detach()) < high,
    )
