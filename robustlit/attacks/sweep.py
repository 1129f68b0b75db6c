"""Robust accuracy as a function of ε: one attack (or AutoAttack) at every radius of a list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlit.attacks._common import check_norm, eval_mode
from robustlit.attacks.autoattack import AutoAttackResult, autoattack
from robustlit.attacks.precision import accepts_channels_last, with_precision

AUTOATTACK_NAMES = {"autoattack": "standard", "autoattack-plus": "plus", "autoattack-rand": "rand"}
"""Sweep names that run an AutoAttack version instead of a single attack."""


@dataclass
class RobustnessCurve:
    """Per-point results of a sweep over ε.

    Attributes:
        eps: Radii, ascending.
        clean: Which points are classified correctly without attack.
        raw: For each ε, which points survived the attack run at that ε alone.
        robust: For each ε, which points survived at that ε *and every smaller one*: an adversarial
            example at a smaller radius is also one at a larger radius, so this is the point-wise worst
            case and never increases with ε.
        autoattack: AutoAttack's per-attack details at each ε (AutoAttack sweeps only).
    """

    eps: list[float]
    clean: Tensor
    raw: dict[float, Tensor] = field(default_factory=dict)
    robust: dict[float, Tensor] = field(default_factory=dict)
    autoattack: dict[float, AutoAttackResult] = field(default_factory=dict)

    def accuracy(self) -> list[float]:
        """Robust accuracy at each ε (worst case over smaller radii)."""
        return [float(self.robust[eps].float().mean()) for eps in self.eps]


def robustness_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: Sequence[float],
    norm: str = "Linf",
    attack: str = "apgd-ce",
    seed: int = 0,
    sample_ids: Tensor | None = None,
    rel_step_size: float | None = None,
    precision: str = "fp32",
    channels_last: bool | None = None,
    **settings: Any,
) -> RobustnessCurve:
    """Attack ``(x, y)`` at every ε and return per-point robust flags.

    The attacks may query the model in reduced precision or channels-last format; the flags always
    come from ``model`` itself.

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs.
        y: True labels.
        eps: Radii in input units (any order; zero is allowed and means clean accuracy).
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        attack: A key of :data:`robustlit.attacks.ATTACKS`, or ``"autoattack"``, ``"autoattack-plus"``
            or ``"autoattack-rand"``.
        seed: Seed of the attacks' per-sample streams.
        sample_ids: Stable sample ids (default: position), so results do not depend on batching.
        rel_step_size: For step-size attacks (PGD), the step as a fraction of ε.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast for the attacks' model queries.
        channels_last: Channels-last inputs for the attacks' queries; ``None`` uses them for image
            batches the model accepts.
        **settings: Further keyword arguments of the attack (``steps``, ``restarts`` …).

    Returns:
        The curve's per-point flags.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
        >>> curve = robustness_curve(model, x, y, eps=[0.1, 0.02], attack="pgd", steps=5)
        >>> curve.eps, curve.accuracy()[0] >= curve.accuracy()[1]
        ([0.02, 0.1], True)
    """
    from robustlit.attacks import ATTACKS

    check_norm(norm)
    if attack not in ATTACKS and attack not in AUTOATTACK_NAMES:
        choices = ", ".join([*ATTACKS, *AUTOATTACK_NAMES])
        raise ValueError(f"attack={attack!r} is unknown; choose one of {choices}")
    radii = sorted(float(e) for e in eps)
    if not radii or radii[0] < 0:
        raise ValueError(f"eps must be a non-empty list of radii >= 0, got {list(eps)}")
    if channels_last is None:
        channels_last = accepts_channels_last(model, x)
    attacker = with_precision(model, precision, channels_last)
    with eval_mode(model), torch.no_grad():
        clean = model(x).argmax(dim=1) == y
    curve = RobustnessCurve(eps=radii, clean=clean)
    survived = clean.clone()
    for radius in radii:
        if radius == 0:
            flags = clean.clone()
        elif attack in AUTOATTACK_NAMES:
            result = autoattack(model, x, y, eps=radius, norm=norm, version=AUTOATTACK_NAMES[attack], seed=seed,
                                sample_ids=sample_ids, precision=precision, channels_last=channels_last, **settings)
            curve.autoattack[radius] = result
            flags = result.robust
        else:
            step = {} if rel_step_size is None else {"alpha": rel_step_size * radius}
            adversarial = ATTACKS[attack](attacker, x, y, eps=radius, norm=norm, seed=seed, sample_ids=sample_ids,
                                          **step, **settings)
            with eval_mode(model), torch.no_grad():
                flags = (model(adversarial).argmax(dim=1) == y) & clean
        survived &= flags
        curve.raw[radius] = flags
        curve.robust[radius] = survived.clone()
    return curve
