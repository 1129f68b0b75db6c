"""Interval bound propagation (IBP) and the margin specification it certifies.

Reference: Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably
Robust Models", 2018.

Bounds hold for every input in the L∞ ball of radius ε around ``x`` intersected with the image box
[0, 1]; they are deterministic (sound up to floating-point rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlit.certify.graph import BoundGraph, Bounds, Run


def input_bounds(x: Tensor, eps: float, domain: tuple[float, float] | None = (0.0, 1.0)) -> Bounds:
    """The L∞ ball of radius ``eps`` around ``x``, clipped to ``domain`` (the image box by default).

    Example:
        >>> b = input_bounds(torch.tensor([[0.0625, 0.5]]), 0.125)
        >>> b.lower.tolist(), b.upper.tolist()
        ([[0.0, 0.375]], [[0.1875, 0.625]])
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    lower, upper = x - eps, x + eps
    if domain is not None:
        # the box always contains x itself, even for an x outside the domain
        lower = torch.minimum(lower.clamp(*domain), x)
        upper = torch.maximum(upper.clamp(*domain), x)
    return Bounds(lower, upper, x)


def margin_spec(y: Tensor, num_classes: int) -> Tensor:
    """Spec matrices ``C`` with rows ``e_y − e_i``, so that ``(C·f(x))_i = f_y − f_i``.

    The row of the true class itself is zero.

    Example:
        >>> margin_spec(torch.tensor([1]), 3)[0].tolist()
        [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, -1.0]]
    """
    eye = torch.eye(num_classes, device=y.device)
    return eye[y].unsqueeze(1) - eye.unsqueeze(0)


def elide(run: Run, spec: Tensor, upper: bool = False) -> Tensor:
    """Bound ``spec · output`` by folding the spec into the last layer before using its input interval.

    For a final linear layer ``W h + b`` this is IBP on the merged layer ``(C W) h + C b``, which is
    tighter than multiplying the output interval by ``C``.

    Args:
        run: A propagation from :meth:`BoundGraph.propagate`.
        spec: ``(N, S, K)`` spec matrices over the ``K`` outputs.
        upper: Return upper bounds instead of lower bounds.

    Returns:
        ``(N, S)`` bounds.
    """
    output = run.graph.output
    coeffs, constant = run.backward(output, spec, upper, stop_at_inputs_of=output)
    return run.concretize(coeffs, constant, upper)


def interval_bounds(
    model: nn.Module,
    x: Tensor,
    eps: float,
    spec: Tensor | None = None,
    domain: tuple[float, float] | None = (0.0, 1.0),
) -> Bounds:
    """IBP bounds of the logits, or of ``spec · logits`` (with the last layer elided), over the ε-ball.

    The model is used in its current mode; BatchNorm layers in training mode normalize with the
    statistics of the clean batch ``x`` (as the forward pass does), held constant over the ball.

    Args:
        model: A model built from supported layers (see :mod:`robustlit.certify.graph`).
        x: Clean inputs in [0, 1].
        eps: L∞ radius in input units.
        spec: Optional ``(N, S, K)`` spec matrices.
        domain: Box the inputs live in (``None``: unbounded).

    Returns:
        Lower and upper bounds, ``(N, K)`` or ``(N, S)``.

    Raises:
        UnsupportedLayerError: If the model holds a layer that cannot be bounded.

    Example:
        >>> net = nn.Linear(2, 1, bias=False)
        >>> _ = net.weight.data.copy_(torch.tensor([[1.0, -1.0]]))
        >>> b = interval_bounds(net, torch.zeros(1, 2), 1.0, domain=None)
        >>> b.lower.tolist(), b.upper.tolist()
        ([[-2.0]], [[2.0]])
    """
    run = BoundGraph.of(model).propagate(input_bounds(x, eps, domain))
    if spec is None:
        return Bounds(run.output.lower, run.output.upper)
    return Bounds(elide(run, spec), elide(run, spec, upper=True))


def robust_cross_entropy(margin_lower: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the worst-case logits ``−m̲`` (Gowal et al.): ``CE([−m̲_i]_i, y)`` with ``m̲_y = 0``.

    Example:
        >>> float(robust_cross_entropy(torch.tensor([[0.0, 50.0]]), torch.tensor([0]))) < 1e-6
        True
    """
    return F.cross_entropy(-margin_lower, y)
