"""Gradient-masking diagnostics: signs that an attack over-states a model's robustness.

Each check is a pure function that returns a list of :class:`MaskingWarning` (empty when all is well),
so callers decide whether to log, raise or store them in a report.

References: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018;
Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse
Parameter-free Attacks", ICML 2020 (the checks run by the AutoAttack reference code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlit.attacks._common import ce_loss, eval_mode
from robustlit.attacks.losses import dlr_loss

_LOSSES = ("dlr", "ce")


@dataclass
class MaskingWarning:
    """A finding of a gradient-masking check.

    Attributes:
        check: Name of the check that fired, e.g. ``"randomness"``.
        message: What was seen and what to do about it.
        details: The measured numbers behind the message.

    Example:
        >>> str(MaskingWarning("softmax_outputs", "outputs look like probabilities"))
        'softmax_outputs: outputs look like probabilities'
    """

    check: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


def check_randomness(model: nn.Module, x: Tensor, n_passes: int = 5, tol: float = 1e-4) -> list[MaskingWarning]:
    """Warn when the model's outputs change between forward passes in eval mode.

    Outputs are compared after scaling each row to unit L2 norm (as the AutoAttack reference does),
    so ``tol`` does not depend on the scale of the logits.

    Args:
        model: The model under evaluation (run in eval mode; its modes are restored).
        x: Inputs in [0, 1].
        n_passes: Forward passes to compare (at least 2).
        tol: Largest difference between normalized outputs still taken as equal.

    Returns:
        One warning if the model is randomized, else an empty list.

    Example:
        >>> import torch
        >>> check_randomness(torch.nn.Linear(3, 2), torch.rand(4, 3))
        []
    """
    if n_passes < 2:
        raise ValueError(f"n_passes must be at least 2 to compare forward passes, got {n_passes}")
    with eval_mode(model), torch.no_grad():
        outputs = torch.stack([model(x) for _ in range(n_passes)])
    normalized = outputs / outputs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    difference = float((normalized - normalized[0]).norm(dim=-1).max())
    predictions = outputs.argmax(dim=-1)
    changed = int((predictions != predictions[0]).any(dim=0).sum())
    if difference <= tol and changed == 0:
        return []
    return [
        MaskingWarning(
            "randomness",
            f"the outputs change between {n_passes} forward passes in eval mode (largest difference {difference:.3g} "
            f"after normalization; {changed} of {len(x)} predictions change): the model is randomized, so a "
            "single-gradient attack over-states its robustness. Attack the expectation over the randomness (EOT), "
            "e.g. AutoAttack version='rand', or make the forward pass deterministic if the randomness is a bug "
            "(dropout forced into training mode?).",
            {"n_passes": n_passes, "max_difference": difference, "changed_predictions": changed, "n": len(x)},
        )
    ]


def check_softmax_outputs(model: nn.Module, x: Tensor, tol: float = 1e-5) -> list[MaskingWarning]:
    """Warn when the model seems to output probabilities (non-negative rows that sum to 1) instead of logits.

    Args:
        model: The model under evaluation (run in eval mode; its modes are restored).
        x: Inputs in [0, 1].
        tol: Tolerance of the range and row-sum tests.

    Returns:
        One warning if the outputs look like probabilities, else an empty list.

    Example:
        >>> import torch
        >>> probabilities = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(dim=1))
        >>> [w.check for w in check_softmax_outputs(probabilities, torch.rand(4, 3))]
        ['softmax_outputs']
    """
    with eval_mode(model), torch.no_grad():
        outputs = model(x)
    row_sum_error = float((outputs.sum(dim=-1) - 1).abs().max())
    if not (float(outputs.min()) > -tol and float(outputs.max()) < 1 + tol and row_sum_error < tol):
        return []
    return [
        MaskingWarning(
            "softmax_outputs",
            "the outputs look like probabilities (in [0, 1], rows sum to 1), not logits: attacks then apply "
            "cross-entropy to a softmax of probabilities, whose gradients vanish on confident points and mask the "
            "model's vulnerability. Remove the final softmax so the model returns logits "
            "(a log-softmax output is fine).",
            {"row_sum_error": row_sum_error, "min": float(outputs.min()), "max": float(outputs.max())},
        )
    ]


def check_zero_gradients(
    model: nn.Module, x: Tensor, y: Tensor, *, loss: str = "dlr", threshold: float = 0.0
) -> list[MaskingWarning]:
    """Warn when the input gradient of the attack loss is exactly zero for too many points.

    Only correctly classified points are checked: they are the ones an attack works on, and DLR is
    constant (so its gradient is zero) on points whose true class ranks third.

    Args:
        model: The model under evaluation (run in eval mode; its modes are restored; parameter
            gradients are not touched).
        x: Inputs in [0, 1].
        y: Labels ``(N,)`` or soft targets ``(N, K)``.
        loss: ``"dlr"`` (scale-free, as the AutoAttack reference checks; needs 3 or more classes,
            otherwise cross-entropy is used) or ``"ce"``.
        threshold: Fraction of zero-gradient points tolerated; the default warns about any.

    Returns:
        One warning if the fraction of zero-gradient points among the correctly classified ones
        exceeds ``threshold``, else an empty list.

    Example:
        >>> import torch
        >>> model, x = torch.nn.Linear(3, 4), torch.rand(5, 3)
        >>> check_zero_gradients(model, x, model(x).argmax(1))
        []
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss={loss!r} is not supported; choose one of {', '.join(_LOSSES)}")
    labels = y.argmax(dim=1) if y.ndim == 2 else y
    with eval_mode(model):
        with torch.no_grad():
            correct = model(x).argmax(dim=-1) == labels
        inputs = x[correct].detach().clone().requires_grad_(True)
        n = len(inputs)
        if n == 0:
            return []
        with torch.enable_grad():
            logits = model(inputs)
            used = "dlr" if loss == "dlr" and logits.shape[-1] >= 3 else "ce"
            values = dlr_loss(logits, labels[correct]) if used == "dlr" else ce_loss(logits, y[correct])
            # a forward pass that detaches or runs without grad gives no gradient at all: count it as zero
            grad = torch.autograd.grad(values.sum(), inputs, allow_unused=True)[0] if values.requires_grad else None
    zero = torch.ones(n, dtype=torch.bool, device=x.device) if grad is None else grad.flatten(1).abs().sum(1) == 0
    count = int(zero.sum())
    fraction = count / n
    if fraction <= threshold:
        return []
    return [
        MaskingWarning(
            "zero_gradients",
            f"{count} of {n} correctly classified points ({fraction:.1%}) have an exactly zero input gradient of "
            f"the {used} loss: "
            "the model has non-differentiable or saturated parts (rounding, sign, quantization, thresholds, a "
            "detached or no-grad forward) that stop gradient-based attacks. Replace them by a differentiable "
            "approximation on the backward pass (BPDA, Athalye et al. 2018) or rely on black-box attacks such as "
            "Square.",
            {"loss": used, "zero_gradient_points": count, "n": n, "fraction": fraction, "threshold": threshold},
        )
    ]


def check_square_beats_whitebox(
    robust_whitebox: Tensor | float, robust_after_square: Tensor | float, threshold: float = 0.002
) -> list[MaskingWarning]:
    """Warn when the black-box Square attack fools points that the white-box attacks left robust.

    A query-based attack that needs no gradients should not beat gradient-based ones; when it does,
    the gradients are likely masked. The AutoAttack reference warns above 0.2 percentage points.

    Args:
        robust_whitebox: Per point, ``True`` if it survived the white-box attacks; or, when only
            totals are known (e.g. counts summed over batches), the white-box robust accuracy.
        robust_after_square: Per point, ``True`` if it also survived Square; or the robust accuracy
            after Square was run on the points the white-box attacks left robust.
        threshold: Fraction of all points that Square alone may fool.

    Returns:
        One warning if Square alone fooled more than ``threshold`` of the points, else an empty list.

    Example:
        >>> import torch
        >>> whitebox = torch.tensor([True, True, False, True])
        >>> [w.check for w in check_square_beats_whitebox(whitebox, torch.tensor([True, False, False, True]))]
        ['square_beats_whitebox']
        >>> check_square_beats_whitebox(0.4321, 0.4310)  # robust accuracies: 0.11 pp, tolerated
        []
    """
    flags = [isinstance(value, Tensor) for value in (robust_whitebox, robust_after_square)]
    if flags == [True, True]:
        whitebox, square = robust_whitebox, robust_after_square
        if whitebox.shape != square.shape or whitebox.ndim != 1:
            raise ValueError(
                "robust_whitebox and robust_after_square must be 1-D and of the same length (one flag per point), "
                f"got shapes {tuple(whitebox.shape)} and {tuple(square.shape)}"
            )
        if whitebox.dtype != torch.bool or square.dtype != torch.bool:
            raise ValueError("per-point robust_whitebox and robust_after_square must be boolean (True = still robust)")
        n = max(len(whitebox), 1)
        before, after = int(whitebox.sum()) / n, int((whitebox & square).sum()) / n
        counted = {"square_only_fooled": int((whitebox & ~square).sum()), "n": len(whitebox)}
        fraction = counted["square_only_fooled"] / n
    elif flags == [False, False]:
        before, after = float(robust_whitebox), float(robust_after_square)
        counted = {}
        fraction = round(before - after, 12)  # 0.5 - 0.498 is 0.0020000000000000018 in floating point
    else:
        raise ValueError(
            "pass robust_whitebox and robust_after_square both as per-point boolean tensors or both as accuracies"
        )
    if fraction <= threshold:
        return []
    return [
        MaskingWarning(
            "square_beats_whitebox",
            f"Square (black-box) fooled {fraction:.2%} of the points that the white-box attacks left robust "
            f"(robust accuracy {before:.2%} -> {after:.2%}), more than the {threshold:.2%} tolerated: the white-box "
            "gradients are likely masked, so the white-box robust accuracy is unreliable. Report the worst case over "
            "all attacks, run Square with more queries and restarts, and design an adaptive attack for this defense.",
            {
                **counted,
                "fraction": fraction,
                "threshold": threshold,
                "whitebox_robust_accuracy": before,
                "robust_accuracy_after_square": after,
            },
        )
    ]


def check_monotone_in_eps(
    eps: Sequence[float], robust_accuracy: Sequence[float], tolerance: float = 0.0
) -> list[MaskingWarning]:
    """Warn when robust accuracy increases with the radius anywhere.

    A larger ball contains the smaller one, so the true robust accuracy can only fall as ε grows; an
    increase means the attack is failing at the larger radius.

    Args:
        eps: Radii, in any order.
        robust_accuracy: Robust accuracy at each radius (fractions in [0, 1]).
        tolerance: Increase tolerated between neighbouring radii (e.g. for randomized attacks).

    Returns:
        One warning listing every increase, else an empty list.

    Example:
        >>> check_monotone_in_eps([0.0, 2 / 255, 8 / 255], [0.9, 0.6, 0.3])
        []
        >>> [w.details["increases"] for w in check_monotone_in_eps([0.0, 0.1, 0.2], [0.9, 0.4, 0.5])]
        [[(0.1, 0.4, 0.2, 0.5)]]
    """
    if len(eps) != len(robust_accuracy):
        raise ValueError(
            f"eps and robust_accuracy must have the same length, got {len(eps)} and {len(robust_accuracy)}"
        )
    points = sorted(zip((float(e) for e in eps), (float(a) for a in robust_accuracy), strict=True))
    increases = [
        (small_eps, small_acc, large_eps, large_acc)
        for (small_eps, small_acc), (large_eps, large_acc) in zip(points, points[1:], strict=False)
        if large_eps > small_eps and large_acc > small_acc + tolerance
    ]
    if not increases:
        return []
    small_eps, small_acc, large_eps, large_acc = increases[0]
    return [
        MaskingWarning(
            "monotone_in_eps",
            f"robust accuracy rises from {small_acc:.4f} at eps={small_eps:.6g} to {large_acc:.4f} at "
            f"eps={large_eps:.6g}"
            + (f" ({len(increases)} increases in all)" if len(increases) > 1 else "")
            + ": a larger ball contains the smaller one, so the attack is failing at the larger radius. Check that "
            "the step size scales with eps and that there are enough steps, and look for masked gradients.",
            {"increases": increases, "tolerance": tolerance},
        )
    ]


def snapshot_state(model: nn.Module) -> dict[str, Tensor]:
    """Copies of the model's parameters, buffers and parameter gradients, for :func:`check_state_unchanged`.

    Keys are the parameter and buffer names; a parameter's gradient, when it has one, is stored
    under ``"<name>.grad"``.

    Example:
        >>> import torch
        >>> sorted(snapshot_state(torch.nn.BatchNorm1d(2)))
        ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']
    """
    state = {name: tensor.detach().clone() for name, tensor in model.named_parameters()}
    state.update({name: tensor.detach().clone() for name, tensor in model.named_buffers()})
    grads = {f"{name}.grad": p.grad for name, p in model.named_parameters() if p.grad is not None}
    state.update({name: grad.detach().clone() for name, grad in grads.items()})
    return state


def check_state_unchanged(before: dict[str, Tensor], after: dict[str, Tensor]) -> list[MaskingWarning]:
    """Warn when an attack changed the model: parameters, buffers (BatchNorm statistics) or gradients.

    Args:
        before: :func:`snapshot_state` taken before the attack.
        after: :func:`snapshot_state` taken after it.

    Returns:
        One warning naming the changed tensors, else an empty list.

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> before = snapshot_state(bn)
        >>> _ = bn(torch.randn(8, 2))  # training mode: the running statistics move
        >>> check_state_unchanged(before, snapshot_state(bn))[0].details["changed"]
        ['num_batches_tracked', 'running_mean', 'running_var']
    """
    changed = sorted(
        name
        for name in before.keys() | after.keys()
        if name not in before or name not in after or not _same(before[name], after[name])
    )
    if not changed:
        return []
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return [
        MaskingWarning(
            "state_unchanged",
            f"the attack changed {len(changed)} model tensors ({shown}): an evaluation must leave parameters, "
            "BatchNorm statistics and gradients as they were. Run the model inside "
            "robustlit.attacks.eval_mode(model) and take input gradients with torch.autograd.grad, not .backward().",
            {"changed": changed},
        )
    ]


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shape, dtype and values, with NaN equal to NaN."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())


def run_checks(model: nn.Module, x: Tensor, y: Tensor, *, n_passes: int = 5) -> list[MaskingWarning]:
    """Run the checks that need only the model and a batch: randomness, softmax outputs and zero gradients.

    Args:
        model: The model under evaluation (run in eval mode; its modes are restored).
        x: Inputs in [0, 1] (a few hundred points are plenty).
        y: Labels ``(N,)`` or soft targets ``(N, K)``.
        n_passes: Forward passes compared by :func:`check_randomness`.

    Returns:
        Every warning raised, in the order above.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10))
        >>> x = torch.rand(8, 3, 2, 2)
        >>> run_checks(model, x, model(x).argmax(1))
        []
    """
    return [
        *check_randomness(model, x, n_passes=n_passes),
        *check_softmax_outputs(model, x),
        *check_zero_gradients(model, x, y),
    ]
