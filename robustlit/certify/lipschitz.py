"""Lipschitz bounds and Lipschitz-margin certificates in L2.

Reference: Tsuzuku et al., "Lipschitz-Margin Training", NeurIPS 2018 (radius ``margin / (√2·L)``);
Sedghi et al., "The Singular Values of Convolutional Layers", ICLR 2019 (exact norms of circular
convolutions). The norm of a convolution is that of the linear operator it applies to images, not the
norm of its weight reshaped to a matrix; :func:`conv_operator_norm` runs power iteration on the operator
itself (``conv2d`` and its adjoint ``conv_transpose2d``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from robustlit.attacks import eval_mode
from robustlit.certify.graph import (
    AddOp,
    BoundGraph,
    Bounds,
    ConvOp,
    DropoutOp,
    LinearOp,
    LinearPoolOp,
    MaxPoolOp,
    ReluOp,
    ReshapeOp,
    ScaleShiftOp,
    Step,
    UnsupportedLayerError,
    _pair,
    conv_transpose_like,
)
from robustlit.certify.result import DETERMINISTIC, CertifiedResult


def power_iteration(
    forward: Callable[[Tensor], Tensor], adjoint: Callable[[Tensor], Tensor], vector: Tensor, iterations: int
) -> tuple[Tensor, Tensor]:
    """Largest singular value of a linear operator given by ``forward`` and its ``adjoint``.

    Args:
        forward: The operator ``A``.
        adjoint: Its adjoint ``Aᵀ``.
        vector: Starting vector (shape of ``A``'s input); warm-start with the vector returned last time.
        iterations: Power iterations on ``AᵀA``.

    Returns:
        ``(σ, v)``: the estimate ``‖A v‖`` (differentiable in the operator's parameters, a lower bound of
        the true norm that converges to it) and the normalized vector ``v`` (detached).

    Example:
        >>> w = torch.diag(torch.tensor([3.0, 1.0]))
        >>> sigma, _ = power_iteration(lambda v: v @ w.T, lambda u: u @ w, torch.ones(1, 2), 30)
        >>> round(float(sigma), 4)
        3.0
    """
    with torch.no_grad():
        v = vector / vector.norm().clamp_min(1e-12)
        for _ in range(iterations):
            v = adjoint(forward(v))
            v = v / v.norm().clamp_min(1e-12)
    return forward(v).norm(), v.detach()


def conv_operator_norm(
    weight: Tensor,
    input_shape: Sequence[int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    iterations: int = 50,
    vector: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Spectral norm of the convolution operator on ``(C, H, W)`` inputs, by power iteration on the operator.

    Args:
        weight: Convolution weight ``(C_out, C_in / groups, kh, kw)``.
        input_shape: ``(C_in, H, W)`` of one input.
        stride: Convolution stride.
        padding: Zero padding.
        dilation: Kernel dilation.
        groups: Channel groups.
        iterations: Power iterations.
        vector: Warm start ``(1, C_in, H, W)``; random when omitted.

    Returns:
        ``(σ, v)`` as in :func:`power_iteration`.

    Example:
        >>> w = torch.zeros(1, 1, 3, 3)
        >>> w[0, 0, 1, 1] = 2.0
        >>> round(float(conv_operator_norm(w, (1, 5, 5), padding=1)[0]), 4)
        2.0
    """
    shape = tuple(input_shape)
    if vector is None:
        generator = torch.Generator().manual_seed(0)
        vector = torch.randn((1, *shape), generator=generator).to(weight)
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return power_iteration(
        lambda v: F.conv2d(v, weight, None, **options),
        lambda u: conv_transpose_like(u, weight, shape[-2:], stride, padding, dilation, groups),
        vector,
        iterations,
    )


def conv_norm_upper_bound(
    weight: Tensor,
    input_size: Sequence[int],
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> float:
    """A guaranteed upper bound of a zero-padded convolution's spectral norm (any stride).

    The zero-padded convolution equals a circular convolution on the padded image followed by
    selecting (and, with a stride, subsampling) outputs, so its norm is at most the circular one,
    which is exact: the largest singular value over the frequencies of the kernel's 2-D DFT. With a
    stride the bound is that of the stride-1 convolution, which can be loose.

    Example:
        >>> w = torch.randn(4, 3, 3, 3)
        >>> estimate = float(conv_operator_norm(w, (3, 8, 8), padding=1, iterations=200)[0])
        >>> conv_norm_upper_bound(w, (8, 8), padding=1) >= estimate - 1e-4
        True
    """
    padding, dilation = _pair(padding), _pair(dilation)
    kernel = weight.detach().double()
    if dilation != (1, 1):
        kh, kw = kernel.shape[-2:]
        dilated = kernel.new_zeros((*kernel.shape[:2], dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1))
        dilated[..., :: dilation[0], :: dilation[1]] = kernel
        kernel = dilated
    size = tuple(max(int(input_size[i]) + 2 * padding[i], kernel.shape[-2 + i]) for i in range(2))
    spectrum = torch.fft.fft2(kernel, s=size)  # (C_out, C_in/groups, H', W')
    per_group = spectrum.shape[0] // groups
    norms = [
        torch.linalg.matrix_norm(spectrum[g * per_group:(g + 1) * per_group].permute(2, 3, 0, 1), ord=2).max()
        for g in range(groups)
    ]
    return float(torch.stack(norms).max())


def _abs_max(value: Tensor | float) -> float:
    return float(value.abs().max()) if isinstance(value, Tensor) else abs(value)


def _layer_bound(step: Step) -> float:
    """An upper bound of the L2 Lipschitz constant of one (single-input) operation."""
    op = step.op
    shape = step.input_bounds().lower.shape
    if isinstance(op, LinearOp):
        weight, _ = op.weights(step)
        return float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))
    if isinstance(op, ConvOp):
        p = op.params(step)
        return conv_norm_upper_bound(p["weight"], shape[-2:], p["padding"], p["dilation"], p["groups"])
    if isinstance(op, ScaleShiftOp):
        scale, _ = step.stash["coefficients"]
        return _abs_max(scale)
    if isinstance(op, ReluOp | ReshapeOp | DropoutOp):
        return 1.0
    if isinstance(op, MaxPoolOp):
        kernel, stride, _, _ = op.window(step)
        return math.sqrt(math.ceil(kernel[0] / stride[0]) * math.ceil(kernel[1] / stride[1]))
    if isinstance(op, LinearPoolOp):
        # non-negative weights: ‖A‖₂ ≤ √(‖A‖₁‖A‖∞), with row sums A·1 and column sums Aᵀ·1
        ones = torch.ones(shape, dtype=torch.float64).requires_grad_(True)
        with torch.enable_grad():
            out = op.concrete(step.node, (ones, *step.args[1:]), step.kwargs)
            (columns,) = torch.autograd.grad(out, ones, torch.ones_like(out))
        return math.sqrt(float(out.max()) * float(columns.max()))
    raise UnsupportedLayerError(f"no Lipschitz bound for layer {op.name!r}")


@torch.no_grad()
def lipschitz_bound(model: nn.Module, input_shape: Sequence[int]) -> float:
    """An upper bound of the model's L2 Lipschitz constant (inputs → logits) in eval mode.

    The product of per-layer bounds along the graph, with residual sums adding their branches' bounds:
    linear layers by their exact spectral norm, convolutions by :func:`conv_norm_upper_bound`,
    BatchNorm and normalization by their largest absolute scale, ReLU by 1, max pooling by the square
    root of how many windows share an input, and average pooling by ``√(‖A‖₁‖A‖∞)``.

    Args:
        model: A model built from supported layers.
        input_shape: Shape of one input ``(C, H, W)``.

    Returns:
        The bound (a float).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> bound = lipschitz_bound(net, (1, 2, 2))
        >>> norms = [torch.linalg.matrix_norm(net[i].weight.detach(), 2) for i in (1, 3)]
        >>> product = float(norms[0] * norms[1])
        >>> abs(bound - product) < 1e-5
        True
    """
    graph = BoundGraph.of(model)
    with eval_mode(model):
        reference = next(iter([*model.parameters(), *model.buffers()]), torch.zeros(()))
        probe = torch.zeros((1, *input_shape), dtype=reference.dtype, device=reference.device)
        run = graph.propagate(Bounds(probe, probe))
    constants: dict[fx.Node, float] = {graph.input: 1.0}
    for node, step in run.steps.items():
        if isinstance(step.op, AddOp):
            constants[node] = sum(constants[source] for source in step.inputs)
        else:
            constants[node] = _layer_bound(step) * constants[step.inputs[0]]
    return constants[graph.output]


def top_two_margin(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted class and its logit margin over the runner-up.

    Example:
        >>> top_two_margin(torch.tensor([[1.0, 3.0, 2.5]]))
        (tensor([1]), tensor([0.5000]))
    """
    top = logits.topk(2, dim=1)
    return top.indices[:, 0], top.values[:, 0] - top.values[:, 1]


@torch.no_grad()
def lipschitz_certify(model: nn.Module, x: Tensor, lipschitz: float | None = None) -> CertifiedResult:
    """Deterministic L2 certificates ``radius = margin / (√2·L)`` of the model's predictions, in eval mode.

    Args:
        model: A model built from supported layers (or any model, when ``lipschitz`` is given).
        x: Inputs ``(N, ...)``.
        lipschitz: A known bound ``L``; computed by :func:`lipschitz_bound` when omitted.

    Returns:
        A :class:`CertifiedResult` (method ``"lipschitz"``, norm ``"L2"``).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> lipschitz_certify(net, torch.rand(2, 1, 2, 2)).radius.shape
        torch.Size([2])
    """
    bound = lipschitz_bound(model, x.shape[1:]) if lipschitz is None else lipschitz
    with eval_mode(model):
        prediction, margin = top_two_margin(model(x))
    radius = margin.double() / (math.sqrt(2.0) * bound)
    return CertifiedResult("lipschitz", "L2", DETERMINISTIC, prediction, radius)
