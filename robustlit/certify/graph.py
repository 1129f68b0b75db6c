"""A traced model whose layers map input intervals forward (IBP) and linear bounds backward (CROWN).

The model is traced once with :mod:`torch.fx`, so ``nn.Sequential`` stacks, residual blocks and any
module whose forward is a fixed graph of supported operations can be bounded. Layers are read live at
every call, so bounds stay differentiable in the parameters (certified training backpropagates them).
"""

from __future__ import annotations

import builtins
import operator
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from typing_extensions import override

from robustlit.errors import RobustlitError

SUPPORTED_LAYERS = (
    "Linear, Conv2d, BatchNorm1d/2d, ReLU, Flatten/view/reshape, AvgPool2d, AdaptiveAvgPool2d, mean, MaxPool2d, "
    "AdaptiveMaxPool2d, Identity, Dropout(p=0 or eval), residual add/sub, and add/sub/mul/div by constants"
)


class UnsupportedLayerError(RobustlitError, TypeError):
    """The model holds a layer (or operation) that bound propagation cannot handle; the message names it."""


@dataclass
class Bounds:
    """Element-wise bounds ``lower ≤ f(x) ≤ upper`` of one tensor over a set of inputs.

    Attributes:
        lower: Lower bounds, shape ``(N, ...)``.
        upper: Upper bounds, same shape.
        center: The layer's value on the clean inputs; only propagated when a BatchNorm layer uses
            batch statistics (training mode), which are then taken from the clean activations.

    Example:
        >>> b = Bounds(torch.tensor([-1.0]), torch.tensor([3.0]))
        >>> b.mid.tolist(), b.rad.tolist()
        ([1.0], [2.0])
    """

    lower: Tensor
    upper: Tensor
    center: Tensor | None = None

    @property
    def mid(self) -> Tensor:
        """Midpoint ``(lower + upper) / 2``."""
        return (self.upper + self.lower) / 2

    @property
    def rad(self) -> Tensor:
        """Half-width ``(upper − lower) / 2``."""
        return (self.upper - self.lower) / 2


@dataclass
class Step:
    """One bounded operation of a run: its node, resolved arguments and output bounds."""

    node: fx.Node
    op: Op
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs: list[fx.Node]
    output: Bounds | None = None
    stash: dict[str, Any] = field(default_factory=dict)

    def input_bounds(self, index: int = 0) -> Bounds:
        """Bounds of the ``index``-th perturbed argument."""
        return [a for a in _flat(self.args) if isinstance(a, Bounds)][index]

    def call(self, pick: Callable[[Bounds], Tensor]) -> Tensor:
        """Run the node's own operation with each Bounds argument replaced by ``pick(bounds)``."""
        args = fx.node.map_aggregate(self.args, lambda a: pick(a) if isinstance(a, Bounds) else a)
        kwargs = fx.node.map_aggregate(self.kwargs, lambda a: pick(a) if isinstance(a, Bounds) else a)
        return self.op.concrete(self.node, args, kwargs)


class Op:
    """How one kind of layer maps bounds forward and linear coefficients backward."""

    nonlinear = False
    """Whether CROWN needs bounds on this op's input to relax it."""

    def __init__(self, graph: BoundGraph, node: fx.Node) -> None:
        self.graph = graph
        self.name = node.target if node.op == "call_module" else node.name

    def concrete(self, node: fx.Node, args: Any, kwargs: Any) -> Tensor:
        """The operation on plain tensors."""
        return self.graph.call_node(node, args, kwargs)

    def interval(self, step: Step) -> Bounds:
        """Output bounds from the input bounds (monotone non-decreasing ops by default)."""
        return Bounds(step.call(lambda b: b.lower), step.call(lambda b: b.upper), self.center(step))

    def center(self, step: Step) -> Tensor | None:
        """Clean value, when the inputs carry one."""
        if any(isinstance(a, Bounds) and a.center is None for a in _flat(step.args)):
            return None
        return step.call(lambda b: b.center)

    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        """Map coefficients ``A`` on the output (``(N, S, *out)``) to coefficients on each perturbed input.

        Returns the input coefficients (one per perturbed input) and the constant term ``(N, S)`` of
        a bound valid for ``A · output``: a lower bound, or an upper one when ``upper``.
        """
        raise NotImplementedError


def _flat(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flat(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flat(item)
    else:
        yield value


def _per_sample(t: Tensor | float, ndim: int) -> Tensor | float:
    """Broadcast a constant of the layer's output (rank ``ndim``, with batch) against ``(N, S, *out)``."""
    if isinstance(t, Tensor) and t.ndim == ndim:
        return t.unsqueeze(1)
    return t


def _unbroadcast(coeff: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``(N, S, *out)`` coefficients down to an input of ``shape`` (with batch) that was broadcast."""
    target = (coeff.shape[0], coeff.shape[1], *shape[1:])
    if coeff.shape == target:
        return coeff
    extra = coeff.ndim - len(target)
    if extra:
        coeff = coeff.sum(dim=tuple(range(2, 2 + extra)))
    dims = tuple(i for i in range(2, coeff.ndim) if target[i] == 1 and coeff.shape[i] != 1)
    return coeff.sum(dim=dims, keepdim=True) if dims else coeff


def _dot(coeff: Tensor, t: Tensor | float) -> Tensor:
    """``Σ A · t`` over the non-(N, S) dimensions."""
    return (coeff * t).flatten(2).sum(2) if isinstance(t, Tensor) else coeff.flatten(2).sum(2) * t


class LinearOp(Op):
    """``y = x Wᵀ + b`` (``nn.Linear`` or ``F.linear``)."""

    def weights(self, step: Step) -> tuple[Tensor, Tensor | None]:
        """Weight and bias at this call."""
        if step.node.op == "call_module":
            module = self.graph.module(step.node)
            return module.weight, module.bias
        args = list(step.args) + [None] * 3
        return step.kwargs.get("weight", args[1]), step.kwargs.get("bias", args[2])

    @override
    def interval(self, step: Step) -> Bounds:
        weight, bias = self.weights(step)
        bounds = step.input_bounds()
        mid, rad = F.linear(bounds.mid, weight, bias), F.linear(bounds.rad, weight.abs())
        center = None if bounds.center is None else F.linear(bounds.center, weight, bias)
        return Bounds(mid - rad, mid + rad, center)

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        weight, bias = self.weights(step)
        return [coeff @ weight], None if bias is None else _dot(coeff, bias)


class ConvOp(Op):
    """2-D convolution (``nn.Conv2d`` with zero padding, or ``F.conv2d``)."""

    def __init__(self, graph: BoundGraph, node: fx.Node) -> None:
        super().__init__(graph, node)
        if node.op == "call_module":
            module = graph.module(node)
            if module.padding_mode != "zeros" or isinstance(module.padding, str) and module.padding != "valid":
                raise UnsupportedLayerError(
                    f"cannot bound layer {self.name!r} (Conv2d with padding={module.padding!r}, "
                    f"padding_mode={module.padding_mode!r}); use numeric zero padding"
                )

    def params(self, step: Step) -> dict[str, Any]:
        """Weight, bias, stride, padding, dilation and groups at this call."""
        if step.node.op == "call_module":
            m = self.graph.module(step.node)
            padding = (0, 0) if m.padding == "valid" else m.padding
            return {"weight": m.weight, "bias": m.bias, "stride": m.stride, "padding": padding,
                    "dilation": m.dilation, "groups": m.groups}
        names = ("weight", "bias", "stride", "padding", "dilation", "groups")
        values = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
        values |= dict(zip(names, step.args[1:], strict=False)) | step.kwargs
        if isinstance(values["padding"], str):
            raise UnsupportedLayerError(f"cannot bound {self.name!r}: F.conv2d with padding={values['padding']!r}")
        return values

    @override
    def interval(self, step: Step) -> Bounds:
        p = self.params(step)
        bounds = step.input_bounds()
        options = {k: p[k] for k in ("stride", "padding", "dilation", "groups")}
        mid = F.conv2d(bounds.mid, p["weight"], p["bias"], **options)
        rad = F.conv2d(bounds.rad, p["weight"].abs(), None, **options)
        center = None if bounds.center is None else F.conv2d(bounds.center, p["weight"], p["bias"], **options)
        return Bounds(mid - rad, mid + rad, center)

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        p = self.params(step)
        in_shape = step.input_bounds().lower.shape
        n, s = coeff.shape[:2]
        flat = coeff.flatten(0, 1)
        transposed = conv_transpose_like(flat, p["weight"], in_shape[-2:], p["stride"], p["padding"],
                                         p["dilation"], p["groups"])
        bias = None if p["bias"] is None else (coeff.sum(dim=(-2, -1)) * p["bias"]).sum(-1)
        return [transposed.view(n, s, *in_shape[1:])], bias


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def conv_transpose_like(
    y: Tensor, weight: Tensor, in_size: tuple[int, ...] | torch.Size, stride: Any, padding: Any, dilation: Any,
    groups: int,
) -> Tensor:
    """The adjoint of ``F.conv2d(·, weight, stride, padding, dilation, groups)`` applied to ``y``, sized ``in_size``.

    Example:
        >>> w = torch.randn(3, 2, 3, 3)
        >>> x, y = torch.randn(1, 2, 5, 5), torch.randn(1, 3, 3, 3)
        >>> lhs = (F.conv2d(x, w, stride=2, padding=1) * y).sum()
        >>> rhs = (x * conv_transpose_like(y, w, (5, 5), 2, 1, 1, 1)).sum()
        >>> bool(torch.isclose(lhs, rhs, atol=1e-4))
        True
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    out_size = y.shape[-2:]
    kernel = weight.shape[-2:]
    output_padding = tuple(
        int(in_size[i]) - ((out_size[i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + 1)
        for i in range(2)
    )
    return F.conv_transpose2d(y, weight, None, stride, padding, output_padding, groups, dilation)


class ScaleShiftOp(Op):
    """Element-wise ``y = x·s + t`` with constant ``s``, ``t``: BatchNorm, and +, −, ×, ÷ by constants."""

    @override
    def coefficients(self, step: Step) -> tuple[Tensor | float, Tensor | float]:
        """The scale and shift at this call."""
        target = step.node.target
        args = step.args
        if target in (operator.neg, torch.neg, "neg"):
            return -1.0, 0.0
        first_perturbed = isinstance(args[0], Bounds)
        other = args[1] if first_perturbed else args[0]
        if target in (operator.add, torch.add, "add", operator.iadd):
            return 1.0, other
        if target in (operator.sub, torch.sub, "sub", operator.isub):
            return (1.0, -other) if first_perturbed else (-1.0, other)
        if target in (operator.mul, torch.mul, "mul", operator.imul):
            return other, 0.0
        return 1.0 / other, 0.0  # x / c (c / x was refused when the graph was traced)

    @override
    def interval(self, step: Step) -> Bounds:
        scale, shift = self.coefficients(step)
        bounds = step.input_bounds()
        mid = bounds.mid * scale + shift
        rad = bounds.rad * (scale.abs() if isinstance(scale, Tensor) else abs(scale))
        center = None if bounds.center is None else bounds.center * scale + shift
        step.stash["coefficients"] = (scale, shift)
        return Bounds(mid - rad, mid + rad, center)

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        scale, shift = step.stash.get("coefficients") or self.coefficients(step)
        ndim = coeff.ndim - 1
        shape = step.input_bounds().lower.shape
        coeff_in = _unbroadcast(coeff * _per_sample(scale, ndim), shape)
        shift = _per_sample(shift, ndim)
        return [coeff_in], None if isinstance(shift, float) and shift == 0.0 else _dot(coeff, shift)


class BatchNormOp(ScaleShiftOp):
    """BatchNorm as a per-channel affine map: running statistics in eval mode, the clean batch's in training."""

    @override
    def coefficients(self, step: Step) -> tuple[Tensor, Tensor]:
        module: _BatchNorm = self.graph.module(step.node)
        bounds = step.input_bounds()
        use_batch = module.training or module.running_mean is None
        if use_batch:
            if bounds.center is None:
                raise RuntimeError("BatchNorm in training mode needs the clean activations (Bounds.center)")
            dims = [0, *range(2, bounds.center.ndim)]
            mean = bounds.center.mean(dim=dims)
            var = bounds.center.var(dim=dims, unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        scale = torch.rsqrt(var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -mean * scale + (module.bias if module.bias is not None else 0.0)
        view = (1, -1) + (1,) * (bounds.lower.ndim - 2)
        return scale.view(view), shift.view(view)


class AddOp(Op):
    """Sum (or difference) of two perturbed tensors: the residual connection."""

    def __init__(self, graph: BoundGraph, node: fx.Node, sign: float) -> None:
        super().__init__(graph, node)
        self.sign = sign

    @override
    def interval(self, step: Step) -> Bounds:
        a, b = step.input_bounds(0), step.input_bounds(1)
        if self.sign > 0:
            lower, upper = a.lower + b.lower, a.upper + b.upper
        else:
            lower, upper = a.lower - b.upper, a.upper - b.lower
        center = None if a.center is None or b.center is None else a.center + self.sign * b.center
        return Bounds(lower, upper, center)

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        a, b = step.input_bounds(0), step.input_bounds(1)
        return [_unbroadcast(coeff, a.lower.shape), _unbroadcast(self.sign * coeff, b.lower.shape)], None


class ReshapeOp(Op):
    """Flatten, view, reshape, identity and inactive dropout: the values are only rearranged."""

    @override
    def interval(self, step: Step) -> Bounds:
        out = super().interval(step)
        if out.lower.shape[0] != step.input_bounds().lower.shape[0]:
            raise UnsupportedLayerError(f"cannot bound {self.name!r}: it reshapes across the batch dimension")
        return out

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        shape = step.input_bounds().lower.shape
        return [coeff.reshape(*coeff.shape[:2], *shape[1:])], None


class DropoutOp(ReshapeOp):
    """Dropout: the identity in eval mode or with p = 0."""

    @override
    def concrete(self, node: fx.Node, args: Any, kwargs: Any) -> Tensor:
        module = self.graph.module(node)
        if module.training and module.p > 0:
            raise UnsupportedLayerError(
                f"cannot bound layer {self.name!r} (Dropout(p={module.p}) in training mode); use p=0 or eval mode"
            )
        return args[0]


class LinearPoolOp(Op):
    """Average pooling and means over non-batch dimensions: linear maps with non-negative weights."""

    @override
    def interval(self, step: Step) -> Bounds:
        out = super().interval(step)
        if out.lower.ndim == 0 or out.lower.shape[0] != step.input_bounds().lower.shape[0]:
            raise UnsupportedLayerError(f"cannot bound {self.name!r}: it averages over the batch dimension")
        return out

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        shape = step.input_bounds().lower.shape
        n, s = coeff.shape[:2]
        with torch.enable_grad():
            probe = torch.zeros((n * s, *shape[1:]), dtype=coeff.dtype, device=coeff.device, requires_grad=True)
            out = self.concrete(step.node, *_replace_first(step, probe))
            (adjoint,) = torch.autograd.grad(out, probe, coeff.reshape(n * s, *out.shape[1:]),
                                             create_graph=coeff.requires_grad)
        return [adjoint.view(n, s, *shape[1:])], None


def _replace_first(step: Step, value: Tensor) -> tuple[Any, Any]:
    args = fx.node.map_aggregate(step.args, lambda a: value if isinstance(a, Bounds) else a)
    return args, step.kwargs


class ReluOp(Op):
    """ReLU, relaxed by CROWN's triangle: the chord above, slope 0 or 1 below (whichever is tighter)."""

    nonlinear = True

    @override
    def concrete(self, node: fx.Node, args: Any, kwargs: Any) -> Tensor:
        return torch.relu(args[0])

    def relaxation(self, step: Step) -> tuple[Tensor, Tensor, Tensor]:
        """Lower slope, upper slope and upper intercept of the linear relaxation (lower intercept is 0)."""
        bounds = step.input_bounds()
        lower, upper = bounds.lower, bounds.upper
        active, unstable = lower >= 0, (lower < 0) & (upper > 0)
        width = (upper - lower).clamp_min(1e-12)
        up_slope = torch.where(unstable, upper / width, active.to(lower.dtype))
        up_intercept = torch.where(unstable, -up_slope * lower, torch.zeros_like(lower))
        low_slope = torch.where(unstable, (upper >= -lower).to(lower.dtype), active.to(lower.dtype))
        return low_slope, up_slope, up_intercept

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        low_slope, up_slope, up_intercept = (t.unsqueeze(1) for t in self.relaxation(step))
        positive, negative = coeff.clamp(min=0), coeff.clamp(max=0)
        if upper:
            return [positive * up_slope + negative * low_slope], _dot(positive, up_intercept)
        return [positive * low_slope + negative * up_slope], _dot(negative, up_intercept)


class MaxPoolOp(Op):
    """Max pooling, relaxed by ``x_j* ≤ max ≤ max_i u_i`` (exact when window element ``j*`` dominates)."""

    nonlinear = True

    def window(self, step: Step) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
        """Kernel, stride, padding and dilation of this call."""
        shape = step.input_bounds().lower.shape
        node = step.node
        if node.op == "call_module":
            module = self.graph.module(node)
            if isinstance(module, nn.AdaptiveMaxPool2d):
                return self._adaptive(shape, module.output_size)
            options = {"kernel_size": module.kernel_size, "stride": module.stride, "padding": module.padding,
                       "dilation": module.dilation, "ceil_mode": module.ceil_mode}
        else:
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            options = dict(zip(names, step.args[1:], strict=False)) | step.kwargs
            if node.target is F.adaptive_max_pool2d:
                return self._adaptive(shape, options["kernel_size"] if "kernel_size" in options else
                                      options["output_size"])
        if options.get("ceil_mode"):
            raise UnsupportedLayerError(f"cannot bound {self.name!r}: max pooling with ceil_mode=True")
        kernel = _pair(options["kernel_size"])
        stride = _pair(options.get("stride") or kernel)
        return kernel, stride, _pair(options.get("padding", 0)), _pair(options.get("dilation", 1))

    def _adaptive(self, shape: torch.Size, output_size: Any) -> tuple[Any, ...]:
        out = _pair(output_size)
        out = tuple(shape[-2 + i] if out[i] is None else out[i] for i in range(2))
        if shape[-2] % out[0] or shape[-1] % out[1]:
            raise UnsupportedLayerError(
                f"cannot bound {self.name!r}: adaptive max pooling from {tuple(shape[-2:])} to {out} "
                "needs sizes that divide evenly"
            )
        kernel = (shape[-2] // out[0], shape[-1] // out[1])
        return kernel, kernel, (0, 0), (1, 1)

    @override
    def interval(self, step: Step) -> Bounds:
        if step.node.op == "call_function" and step.kwargs.get("return_indices"):
            raise UnsupportedLayerError(f"cannot bound {self.name!r}: max pooling with return_indices=True")
        return super().interval(step)

    @override
    def backward(self, step: Step, coeff: Tensor, upper: bool) -> tuple[list[Tensor], Tensor | None]:
        kernel, stride, padding, dilation = self.window(step)
        bounds = step.input_bounds()
        n, c, h, w = bounds.lower.shape
        options = {"kernel_size": kernel, "dilation": dilation, "stride": stride}

        def windows(t: Tensor) -> Tensor:
            padded = F.pad(t, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
            return F.unfold(padded, **options).view(n, c, kernel[0] * kernel[1], -1)

        low, up = windows(bounds.lower), windows(bounds.upper)
        best = low.argmax(dim=2, keepdim=True)
        best_low = low.gather(2, best).squeeze(2)
        up_max = up.amax(dim=2)
        up_other = up.scatter(2, best, float("-inf")).amax(dim=2)
        exact = best_low >= up_other
        s = coeff.shape[1]
        flat = coeff.reshape(n, s, c, -1)
        positive, negative = flat.clamp(min=0), flat.clamp(max=0)
        tight, loose = (negative, positive) if upper else (positive, negative)
        exact = exact.unsqueeze(1)
        linear = tight + torch.where(exact, loose, torch.zeros_like(loose))
        constant = torch.where(exact, torch.zeros_like(loose), loose * up_max.unsqueeze(1))
        spread = torch.zeros((n, s, c, kernel[0] * kernel[1], flat.shape[-1]), dtype=coeff.dtype, device=coeff.device)
        spread = spread.scatter(3, best.unsqueeze(1).expand(n, s, c, 1, flat.shape[-1]), linear.unsqueeze(3))
        size = (h + 2 * padding[0], w + 2 * padding[1])
        folded = F.fold(spread.view(n * s, -1, flat.shape[-1]), size, **options)
        folded = folded[..., padding[0]:padding[0] + h, padding[1]:padding[1] + w]
        return [folded.reshape(n, s, c, h, w)], constant.flatten(2).sum(2)


_META_METHODS = ("size", "dim")
_RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze)
_RESHAPE_METHODS = ("flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze")
_ADD_TARGETS = (operator.add, torch.add, "add", operator.iadd)
_SUB_TARGETS = (operator.sub, torch.sub, "sub", operator.isub)
_AFFINE_TARGETS = (*_ADD_TARGETS, *_SUB_TARGETS, operator.mul, torch.mul, "mul", operator.imul,
                   operator.truediv, torch.div, "div", operator.itruediv, operator.neg, torch.neg, "neg")
_MODULE_OPS: tuple[tuple[type[nn.Module], type[Op]], ...] = (
    (nn.Linear, LinearOp),
    (nn.Conv2d, ConvOp),
    (_BatchNorm, BatchNormOp),
    (nn.ReLU, ReluOp),
    (nn.Flatten, ReshapeOp),
    (nn.Identity, ReshapeOp),
    (nn.Dropout, DropoutOp),
    (nn.AvgPool2d, LinearPoolOp),
    (nn.AdaptiveAvgPool2d, LinearPoolOp),
    (nn.MaxPool2d, MaxPoolOp),
    (nn.AdaptiveMaxPool2d, MaxPoolOp),
)
_FUNCTION_OPS: dict[Any, type[Op]] = {
    F.linear: LinearOp,
    F.conv2d: ConvOp,
    F.relu: ReluOp,
    torch.relu: ReluOp,
    F.avg_pool2d: LinearPoolOp,
    F.adaptive_avg_pool2d: LinearPoolOp,
    torch.mean: LinearPoolOp,
    F.max_pool2d: MaxPoolOp,
    F.adaptive_max_pool2d: MaxPoolOp,
    **{fn: ReshapeOp for fn in _RESHAPE_FUNCTIONS},
}
_METHOD_OPS: dict[str, type[Op]] = {"relu": ReluOp, "mean": LinearPoolOp, **{m: ReshapeOp for m in _RESHAPE_METHODS}}


class BoundGraph:
    """A model traced for bound propagation; build it with :meth:`of`, which caches one per model.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> graph = BoundGraph.of(net)
        >>> run = graph.propagate(Bounds(torch.zeros(1, 2), torch.ones(1, 2)))
        >>> bool((run.output.lower <= net(torch.rand(1, 2))).all())
        True
    """

    _cache: weakref.WeakKeyDictionary[nn.Module, BoundGraph] = weakref.WeakKeyDictionary()

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        scripted = [name or type(model).__name__ for name, m in model.named_modules()
                    if isinstance(m, torch.jit.ScriptModule)]
        if scripted:
            raise UnsupportedLayerError(
                f"cannot bound the TorchScript module {scripted[0]!r}; load the weights into their architecture "
                "(a state_dict with model.arch=..., or a Lightning .ckpt) to certify with bound propagation"
            )
        try:
            self.graph = fx.Tracer().trace(model)
        except Exception as error:  # noqa: BLE001 - any tracing failure means the model cannot be bounded
            raise UnsupportedLayerError(
                f"cannot trace {type(model).__name__} for bound propagation ({type(error).__name__}: {error}); "
                "certify a model built from nn layers without data-dependent control flow"
            ) from None
        placeholders = [node for node in self.graph.nodes if node.op == "placeholder"]
        if len(placeholders) != 1:
            raise UnsupportedLayerError(f"bound propagation needs a forward with one input, got {len(placeholders)}")
        self.input = placeholders[0]
        self.ops: dict[fx.Node, Op] = {}
        perturbed = {self.input}
        for node in self.graph.nodes:
            if node.op not in ("call_module", "call_function", "call_method"):
                continue
            inputs = [a for a in _flat((node.args, node.kwargs)) if isinstance(a, fx.Node) and a in perturbed]
            if not inputs or self._is_meta(node):
                continue
            perturbed.add(node)
            self.ops[node] = self._make_op(node, len(inputs))
        self.output = next(node for node in self.graph.nodes if node.op == "output").args[0]
        if not isinstance(self.output, fx.Node) or self.output not in perturbed:
            raise UnsupportedLayerError("bound propagation needs a forward that returns one tensor of logits")

    @classmethod
    def of(cls, model: nn.Module) -> BoundGraph:
        """The (cached) graph of ``model``.

        Raises:
            UnsupportedLayerError: If a layer cannot be bounded; the message names it.
        """
        graph = cls._cache.get(model)
        if graph is None:
            graph = cls._cache[model] = cls(model)
        return graph

    def module(self, node: fx.Node) -> Any:
        """The live submodule a ``call_module`` node calls."""
        return self.model.get_submodule(node.target)

    def call_node(self, node: fx.Node, args: Any, kwargs: Any) -> Any:
        """Run a node's operation on concrete values."""
        if node.op == "call_module":
            return self.module(node)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    @staticmethod
    def _is_meta(node: fx.Node) -> bool:
        return (node.op == "call_method" and node.target in _META_METHODS) or (
            node.op == "call_function" and node.target is builtins.getattr
        )

    def _make_op(self, node: fx.Node, perturbed_inputs: int) -> Op:
        target = node.target
        if node.op == "call_module":
            module = self.module(node)
            for kind, op in _MODULE_OPS:
                if isinstance(module, kind):
                    return op(self, node)
            raise UnsupportedLayerError(
                f"cannot bound layer {target!r} ({type(module).__name__}); supported: {SUPPORTED_LAYERS}"
            )
        label = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
        if target in _ADD_TARGETS or target in _SUB_TARGETS:
            if perturbed_inputs == 2:
                return AddOp(self, node, 1.0 if target in _ADD_TARGETS else -1.0)
            return ScaleShiftOp(self, node)
        if target in _AFFINE_TARGETS:
            if perturbed_inputs > 1 or target in (operator.truediv, torch.div, "div", operator.itruediv) and (
                node.args[0] not in self._inputs_of(node)
            ):
                raise UnsupportedLayerError(
                    f"cannot bound operation {node.name!r} ({label}) of two perturbed tensors or dividing by one; "
                    f"supported: {SUPPORTED_LAYERS}"
                )
            return ScaleShiftOp(self, node)
        table: dict[Any, type[Op]] = _FUNCTION_OPS if node.op == "call_function" else _METHOD_OPS
        op = table.get(target)
        if op is None or perturbed_inputs > 1:
            raise UnsupportedLayerError(
                f"cannot bound operation {node.name!r} ({label}); supported: {SUPPORTED_LAYERS}"
            )
        return op(self, node)

    def _inputs_of(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.args if isinstance(a, fx.Node) and (a is self.input or a in self.ops)]

    def propagate(self, inputs: Bounds, tighten: Callable[[Run, fx.Node], None] | None = None) -> Run:
        """Interval bounds of every perturbed node for inputs within ``inputs``.

        Args:
            inputs: Bounds of the model input (with ``center`` when BatchNorm uses batch statistics).
            tighten: Called with the run and each input node of a nonlinear op before that op runs,
                so a method such as CROWN can replace the node's bounds with tighter ones.

        Returns:
            The run: every step with its bounds, and the output bounds.
        """
        if inputs.center is None and self.needs_center():
            inputs = Bounds(inputs.lower, inputs.upper, (inputs.lower + inputs.upper) / 2)
        run = Run(self, inputs)
        for node in self.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "get_attr":
                run.env[node] = _get_attr(self.model, node.target)
                continue
            if node.op == "output":
                break
            args = fx.node.map_arg(node.args, lambda n: run.env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: run.env[n])
            op = self.ops.get(node)
            if op is None:
                if self._is_meta(node):
                    args = fx.node.map_aggregate(args, lambda a: a.lower if isinstance(a, Bounds) else a)
                run.env[node] = self.call_node(node, args, kwargs)
                continue
            inputs_of_node = [a for a in _flat((node.args, node.kwargs)) if isinstance(a, fx.Node)
                              and (a is self.input or a in self.ops)]
            if op.nonlinear and tighten is not None:
                for source in inputs_of_node:
                    tighten(run, source)
                args = fx.node.map_arg(node.args, lambda n: run.env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: run.env[n])
            step = Step(node, op, args, kwargs, inputs_of_node)
            step.output = op.interval(step)
            run.steps[node] = step
            run.env[node] = step.output
        return run

    def needs_center(self) -> bool:
        """Whether some BatchNorm normalizes with batch statistics (training mode or no running stats)."""
        return any(isinstance(m, _BatchNorm) and (m.training or m.running_mean is None) for m in self.model.modules())


def _get_attr(model: nn.Module, target: str) -> Any:
    value: Any = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


class Run:
    """The bounds of one propagation: ``env`` maps nodes to values, ``steps`` the bounded operations in order."""

    def __init__(self, graph: BoundGraph, inputs: Bounds) -> None:
        self.graph = graph
        self.inputs = inputs
        self.env: dict[fx.Node, Any] = {graph.input: inputs}
        self.steps: dict[fx.Node, Step] = {}
        self.tightened: set[fx.Node] = set()

    @property
    def output(self) -> Bounds:
        """Bounds of the model output."""
        return self.env[self.graph.output]

    @override
    def backward(self, start: fx.Node, coeff: Tensor, upper: bool, stop_at_inputs_of: fx.Node | None = None
                 ) -> tuple[dict[fx.Node, Tensor], Tensor]:
        """Propagate linear coefficients ``coeff`` (``(N, S, *shape of start)``) back through the run.

        Args:
            start: The node the coefficients apply to.
            coeff: The coefficients ``A`` of the bound on ``A · start``.
            upper: Bound ``A · start`` from above instead of below.
            stop_at_inputs_of: Only go one step: return the coefficients on this node's inputs.

        Returns:
            Coefficients on the nodes where propagation stopped (the model input, or the inputs of
            ``stop_at_inputs_of``) and the accumulated constant term ``(N, S)``.
        """
        pending: dict[fx.Node, Tensor] = {start: coeff}
        constant = torch.zeros(coeff.shape[:2], dtype=coeff.dtype, device=coeff.device)
        finished: dict[fx.Node, Tensor] = {}
        for node in reversed(list(self.steps)):
            if node not in pending:
                continue
            step = self.steps[node]
            inputs, bias = step.op.backward(step, pending.pop(node), upper)
            if bias is not None:
                constant = constant + bias
            for source, coeff_in in zip(step.inputs, inputs, strict=True):
                target = finished if stop_at_inputs_of is node or source is self.graph.input else pending
                target[source] = target[source] + coeff_in if source in target else coeff_in
            if stop_at_inputs_of is node:
                break
        for source, coeff_in in pending.items():
            finished[source] = finished[source] + coeff_in if source in finished else coeff_in
        return finished, constant

    def concretize(self, coeffs: dict[fx.Node, Tensor], constant: Tensor, upper: bool) -> Tensor:
        """Turn linear bounds ``Σ A_k · node_k + c`` into numbers with each node's interval."""
        total = constant
        for node, coeff in coeffs.items():
            bounds = self.env[node]
            mid = (coeff * bounds.mid.unsqueeze(1)).flatten(2).sum(2)
            spread = (coeff.abs() * bounds.rad.unsqueeze(1)).flatten(2).sum(2)
            total = total + (mid + spread if upper else mid - spread)
        return total
