"""Robust accuracy under white-box and black-box attacks, for several norms and radii."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.attacks import ATTACKS, NORMS, parse_eps
from robustlit.attacks.checks import (
    MaskingWarning,
    check_monotone_in_eps,
    check_square_beats_whitebox,
    check_state_unchanged,
    run_checks,
    snapshot_state,
)
from robustlit.attacks.precision import PRECISIONS
from robustlit.attacks.sweep import AUTOATTACK_NAMES, robustness_curve
from robustlit.reporting.schema import Metric
from robustlit.suites.base import EvaluationSuite

_STEP_ATTACKS = ("pgd",)  # attacks whose step size the suite sets from rel_step_size


class AdversarialSuite(EvaluationSuite):
    """Robust accuracy of each attack at each (norm, ε) (evaluation suite; works on any LightningModule).

    Per attack and norm, a point counts as robust at ε only if it is also robust at every smaller ε
    of the list (an adversarial example at a smaller ε is valid at a larger one), so each reported
    curve is the point-wise worst case and never increases with ε. With several attacks, the suite
    also reports their point-wise worst case as ``attack="worst_case"``. AutoAttack rows come with
    ``robust_accuracy_after`` rows, the robust accuracy after each of its component attacks.

    Gradient-masking checks run on the first batch (randomness, softmax outputs, zero gradients)
    and at the end (model state changed, robust accuracy not monotone in ε, Square beating the
    white-box attacks); their warnings go to :attr:`warnings` and into the report.

    Args:
        attacks: Names from :data:`robustlit.attacks.ATTACKS`, or ``autoattack``, ``autoattack-plus``,
            ``autoattack-rand``.
        eps: Radii per norm, e.g. ``{"Linf": ["2/255", "8/255"], "L2": [0.5]}``; a norm with an empty
            list is skipped. Values are numbers or fraction strings.
        steps: Iterations of PGD-style attacks (ignored by AutoAttack, which uses the reference settings).
        rel_step_size: PGD step size as a fraction of ε (0.25 gives 2/255 at 8/255).
        restarts: Random restarts of PGD-style attacks.
        seed: Seed of the per-sample random streams.
        precision: ``fp32``, ``bf16`` or ``fp16``: run the model under autocast during attacks (the
            perturbation and loss stay fp32). Correct and wrong predictions are always counted by the
            model in its own precision.
        channels_last: Feed the model channels-last inputs during attacks; ``None`` (the default)
            does so for image batches the model accepts.
        checks: Run the gradient-masking checks.
        batch_size: Points attacked at once by AutoAttack (default: the whole loader batch).
        progress: Show a progress bar per AutoAttack component (on rank 0), with the points still robust.
        limit: Only attack the first ``limit`` test samples.
        stages: Loops to run in.

    Example:
        >>> suite = AdversarialSuite(attacks=["pgd"], eps={"Linf": ["2/255", "8/255"]}, steps=20)
        >>> [round(e * 255) for e in suite.eps["Linf"]]
        [2, 8]
    """

    suite = "adversarial"

    def __init__(
        self,
        attacks: Sequence[str] = ("pgd",),
        eps: Mapping[str, Sequence[float | str]] | None = None,
        steps: int = 10,
        rel_step_size: float = 0.25,
        restarts: int = 1,
        seed: int = 0,
        precision: str = "fp32",
        channels_last: bool | None = None,
        checks: bool = True,
        batch_size: int | None = None,
        progress: bool = True,
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        known = [*ATTACKS, *AUTOATTACK_NAMES]
        unknown = [name for name in attacks if name not in known]
        if unknown or not attacks:
            raise MisconfigurationException(f"unknown attacks {unknown or '[]'}; choose from {', '.join(known)}")
        eps = {"Linf": ["8/255"]} if eps is None else eps
        bad_norms = [norm for norm in eps if norm not in NORMS]
        if bad_norms:
            raise MisconfigurationException(
                f"AdversarialSuite eps has unknown norms {bad_norms}; use {', '.join(NORMS)}"
            )
        self.eps = {norm: sorted(parse_eps(value) for value in values) for norm, values in eps.items() if values}
        if not self.eps or any(values[0] < 0 for values in self.eps.values()):
            raise MisconfigurationException(f"AdversarialSuite needs radii >= 0 for at least one norm, got {dict(eps)}")
        if steps < 1 or restarts < 1 or rel_step_size <= 0:
            raise MisconfigurationException("AdversarialSuite needs steps >= 1, restarts >= 1 and rel_step_size > 0")
        if precision not in PRECISIONS:
            raise MisconfigurationException(
                f"AdversarialSuite precision={precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        self.attacks = list(attacks)
        self.steps = steps
        self.rel_step_size = rel_step_size
        self.restarts = restarts
        self.seed = seed
        self.precision = precision
        self.channels_last = channels_last
        self.checks = checks
        self.batch_size = batch_size
        self.progress = progress
        self.warnings: list[MaskingWarning] = []

    def reset(self) -> None:
        """Zero the counts and forget the warnings of the previous epoch."""
        self._keys: dict[str, tuple[str, str, float, str]] = {}
        self._state_before: dict[str, Tensor] | None = None
        self.warnings = []

    def _count(self, key: tuple[str, str, float, str], flags: Tensor, sample_ids: Tensor) -> None:
        """Store per-sample flags under ``key`` = (attack, norm, ε, kind)."""
        name = "|".join(str(part) for part in key)
        self._keys[name] = key
        self.store(name, flags, sample_ids)

    def _settings(self, attack: str) -> dict[str, Any]:
        if attack in AUTOATTACK_NAMES:
            return {"batch_size": self.batch_size, "progress": self.progress and rank_zero_only.rank == 0}
        if attack in _STEP_ATTACKS:
            return {"steps": self.steps, "restarts": self.restarts, "rel_step_size": self.rel_step_size}
        return {}

    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Attack the batch at every (norm, ε) and count the points that stay correctly classified."""
        if self._state_before is None:
            self._state_before = snapshot_state(model)
            if self.checks:
                self.warnings.extend(run_checks(model, x, y))
        for norm, radii in self.eps.items():
            worst = {radius: torch.ones_like(y, dtype=torch.bool) for radius in radii}
            for attack in self.attacks:
                curve = robustness_curve(
                    model,
                    x,
                    y,
                    eps=radii,
                    norm=norm,
                    attack=attack,
                    seed=self.seed,
                    sample_ids=sample_ids,
                    precision=self.precision,
                    channels_last=self.channels_last,
                    **self._settings(attack),
                )
                for radius in radii:
                    self._count((attack, norm, radius, "robust"), curve.robust[radius], sample_ids)
                    self._count((attack, norm, radius, "raw"), curve.raw[radius], sample_ids)
                    worst[radius] &= curve.robust[radius]
                for radius, result in curve.autoattack.items():
                    components = list(result.robust_after)
                    for component, flags in result.robust_after.items():
                        self._count((attack, norm, radius, f"after:{component}"), flags, sample_ids)
                    if "square" in components[1:]:
                        before = components[components.index("square") - 1]
                        self._count((attack, norm, radius, "before:square"), result.robust_after[before], sample_ids)
            for radius in radii:
                self._count(("worst_case", norm, radius, "robust"), worst[radius], sample_ids)

    def compute(self) -> list[Metric]:
        """``adversarial/robust_accuracy`` rows, and AutoAttack's ``robust_accuracy_after`` rows."""
        if not self._stored:
            return []
        metrics = []
        names = self.attacks + (["worst_case"] if len(self.attacks) > 1 else [])
        for norm, radii in self.eps.items():
            for attack in names:
                for radius in radii:
                    context = self._context(attack, norm, radius)
                    metrics.append(
                        Metric(self.suite, "robust_accuracy", self._rate(attack, norm, radius, "robust"), context)
                    )
                    components = sorted(
                        kind for *head, kind in self._keys.values()
                        if tuple(head) == (attack, norm, radius) and kind.startswith("after:")
                    )
                    for component in components:
                        metrics.append(
                            Metric(
                                self.suite,
                                "robust_accuracy_after",
                                self._rate(attack, norm, radius, component),
                                {**context, "component": component.removeprefix("after:")},
                            )
                        )
        return metrics

    def _finish(self, pl_module: Any) -> list[Metric]:
        results = super()._finish(pl_module)
        if self.checks and self._stored:
            self.warnings.extend(self._final_checks(pl_module))
        for warning in self.warnings:
            rank_zero_warn(f"[{warning.check}] {warning.message}")
        return results

    def _final_checks(self, model: nn.Module | None) -> list[MaskingWarning]:
        found = []
        if model is not None and self._state_before is not None:
            found += check_state_unchanged(self._state_before, snapshot_state(model))
        for norm, radii in self.eps.items():
            for attack in self.attacks:
                raw = [self._rate(attack, norm, radius, "raw") for radius in radii]
                found += check_monotone_in_eps(radii, raw)
                for radius in radii:
                    if (attack, norm, radius, "before:square") in self._keys.values():
                        found += check_square_beats_whitebox(
                            self._rate(attack, norm, radius, "before:square"),
                            self._rate(attack, norm, radius, "after:square"),
                        )
        return found

    def _rate(self, attack: str, norm: str, radius: float, kind: str) -> float:
        return self.stored("|".join(str(part) for part in (attack, norm, radius, kind))).float().mean().item()

    def _context(self, attack: str, norm: str, radius: float) -> dict[str, Any]:
        context: dict[str, Any] = {"attack": attack, "norm": norm, "eps": round(radius, 7)}
        if attack in _STEP_ATTACKS:
            context |= {"steps": self.steps, "restarts": self.restarts}
        if self.precision != "fp32":
            context["precision"] = self.precision
        return context
