"""CROWN and CROWN-IBP: linear bounds propagated backward from the output.

References: Zhang et al., "Efficient Neural Network Robustness Certification with General Activation
Functions", NeurIPS 2018; Zhang et al., "Towards Stable and Efficient Training of Verifiably Robust
Neural Networks", ICLR 2020.

CROWN-IBP relaxes each ReLU/max-pool with the IBP bounds of its input and runs one backward pass from
the spec; CROWN also bounds every relaxed input by its own backward pass (tighter, one pass per neuron,
so only for small networks). Both are exact on networks without ReLU or max pooling.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import Tensor, nn

from robustlit.certify.graph import BoundGraph, Bounds, Run
from robustlit.certify.ibp import input_bounds

INTERMEDIATE = ("ibp", "crown")


def linear_bound(run: Run, spec: Tensor, upper: bool = False) -> Tensor:
    """Bound ``spec · output`` by one backward pass through the whole run.

    Args:
        run: A propagation whose steps hold the bounds used to relax the nonlinear layers.
        spec: ``(N, S, K)`` spec matrices over the outputs.
        upper: Return upper bounds instead of lower bounds.

    Returns:
        ``(N, S)`` bounds.
    """
    coeffs, constant = run.backward(run.graph.output, spec, upper)
    return run.concretize(coeffs, constant, upper)


def _tighten_with_crown(run: Run, node: fx.Node) -> None:
    """Replace a node's interval bounds by CROWN bounds (identity spec), intersected with them."""
    if node is run.graph.input or node in run.tightened:
        return
    bounds: Bounds = run.env[node]
    n, size = bounds.lower.shape[0], bounds.lower[0].numel()
    eye = torch.eye(size, dtype=bounds.lower.dtype, device=bounds.lower.device)
    spec = eye.view(1, size, *bounds.lower.shape[1:]).expand(n, *([-1] * bounds.lower.ndim))
    lower = run.concretize(*run.backward(node, spec, upper=False), upper=False).view_as(bounds.lower)
    upper = run.concretize(*run.backward(node, spec, upper=True), upper=True).view_as(bounds.lower)
    run.env[node] = Bounds(torch.maximum(bounds.lower, lower), torch.minimum(bounds.upper, upper), bounds.center)
    run.tightened.add(node)


def propagate(model: nn.Module, x: Tensor, eps: float, intermediate: str = "ibp",
              domain: tuple[float, float] | None = (0.0, 1.0)) -> Run:
    """Propagate the ε-ball through ``model``, bounding the inputs of nonlinear layers by ``intermediate``."""
    if intermediate not in INTERMEDIATE:
        raise ValueError(f"intermediate={intermediate!r}; choose one of {', '.join(INTERMEDIATE)}")
    tighten = _tighten_with_crown if intermediate == "crown" else None
    return BoundGraph.of(model).propagate(input_bounds(x, eps, domain), tighten=tighten)


def crown_bounds(
    model: nn.Module,
    x: Tensor,
    eps: float,
    spec: Tensor | None = None,
    *,
    intermediate: str = "ibp",
    domain: tuple[float, float] | None = (0.0, 1.0),
) -> Bounds:
    """CROWN-IBP (``intermediate="ibp"``) or CROWN (``"crown"``) bounds of ``spec · logits`` over the ε-ball.

    Args:
        model: A model built from supported layers, used in its current mode.
        x: Clean inputs in [0, 1].
        eps: L∞ radius in input units.
        spec: ``(N, S, K)`` spec matrices; the identity (bounds of the logits) when omitted.
        intermediate: How the inputs of ReLU and max-pool layers are bounded.
        domain: Box the inputs live in (``None``: unbounded).

    Returns:
        ``(N, S)`` lower and upper bounds.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        >>> x = torch.rand(2, 3)
        >>> b = crown_bounds(net, x, 0.0)
        >>> torch.allclose(b.lower, net(x), atol=1e-5) and torch.allclose(b.upper, net(x), atol=1e-5)
        True
    """
    run = propagate(model, x, eps, intermediate, domain)
    if spec is None:
        k = run.output.lower.shape[1]
        spec = torch.eye(k, dtype=x.dtype, device=x.device).expand(x.shape[0], k, k)
    return Bounds(linear_bound(run, spec), linear_bound(run, spec, upper=True))
