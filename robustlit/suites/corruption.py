"""Accuracy under common corruptions (CIFAR-10-C / ImageNet-C style) and under occluding patches."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.corruptions import CORRUPTIONS, SEVERITIES, STANDARD, corrupt, occlude, occlusion_grid
from robustlit.errors import ConfigError
from robustlit.metrics.corruption import (
    Baseline,
    corruption_errors,
    load_baseline,
    mce,
    mean_errors,
    relative_mce,
    unnormalized_mce,
)
from robustlit.reporting.schema import Metric
from robustlit.suites.base import EvaluationSuite


def _corruption_list(corruptions: str | Sequence[str]) -> list[str]:
    if isinstance(corruptions, str):
        named = {"standard": list(STANDARD), "all": list(CORRUPTIONS)}
        if corruptions not in named:
            raise MisconfigurationException(
                f"CorruptionSuite corruptions={corruptions!r}; use 'standard', 'all' or a list of "
                f"{', '.join(CORRUPTIONS)}"
            )
        return named[corruptions]
    unknown = [name for name in corruptions if name not in CORRUPTIONS]
    if unknown:
        raise MisconfigurationException(
            f"CorruptionSuite has unknown corruptions {unknown}; choose from {', '.join(CORRUPTIONS)}"
        )
    return list(dict.fromkeys(corruptions))


class CorruptionSuite(EvaluationSuite):
    """Error under each corruption and severity, mean corruption error and mCE (evaluation suite; any LightningModule).

    Every test batch is corrupted on the model's device with :func:`robustlit.corruptions.corrupt`, using the
    samples' test-set positions as ids, so results do not depend on the batch size. Metrics:

    * ``corruption/error {corruption, severity}`` and ``corruption/mean_error {corruption}``;
    * ``corruption/mce {baseline}``: normalized by the baseline's errors (Hendrycks & Dietterich 2019), or, with
      no baseline, the plain mean error (``baseline="none"``, the usual CIFAR-10-C figure);
    * ``corruption/relative_mce {baseline}`` when the baseline has a clean error.

    mCE averages the selected corruptions among the 15 standard ones (the 4 extras are held-out corruptions);
    if none is selected, it averages all selected corruptions.

    With ``occlusion_patches``, it also reports ``corruption/occlusion_accuracy {patch, position}``: accuracy
    with a square patch of ``fill`` at each position of a ``occlusion_positions × occlusion_positions`` grid
    (``position="top,left"`` in pixels; ``"mean"`` averages the grid).

    Args:
        corruptions: ``"standard"`` (the 15), ``"all"`` (19) or a list of names.
        severities: Severities to evaluate, from 1 to 5.
        baseline: ``None``, ``"alexnet"`` (ImageNet-C), a ``robustness_report.json`` path of a baseline run,
            or a dict ``{corruption: {severity: error}, "clean": error}``.
        seed: Seed of the per-sample corruption streams.
        batch_size: Images corrupted and classified at once (default: the loader's batch).
        occlusion_patches: Patch sides, in pixels (int) or as a fraction of the shorter image side (float < 1).
        occlusion_positions: Grid positions per axis.
        occlusion_fill: Value of the occluding patch.
        limit: Only evaluate the first ``limit`` test samples.
        stages: Loops to run in.

    Example:
        >>> suite = CorruptionSuite(corruptions=["fog", "contrast"], severities=[1, 5], baseline={"fog": 0.5,
        ...                         "contrast": 0.4, "clean": 0.1})
        >>> suite.corruptions, suite.baseline.name
        (['fog', 'contrast'], 'dict')
    """

    suite = "corruption"

    def __init__(
        self,
        corruptions: str | Sequence[str] = "standard",
        severities: Sequence[int] = SEVERITIES,
        baseline: str | Mapping[str, Any] | Baseline | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        occlusion_patches: Sequence[int | float] = (),
        occlusion_positions: int = 3,
        occlusion_fill: float = 0.5,
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        self.corruptions = _corruption_list(corruptions)
        bad = [s for s in severities if isinstance(s, bool) or not isinstance(s, int) or s not in SEVERITIES]
        if bad:
            raise MisconfigurationException(f"CorruptionSuite severities {bad} are invalid; use integers from 1 to 5")
        self.severities = sorted(set(severities))
        if not (self.corruptions and self.severities) and not occlusion_patches:
            raise MisconfigurationException(
                "CorruptionSuite has nothing to do: give corruptions and severities, or occlusion_patches"
            )
        if batch_size is not None and batch_size < 1:
            raise MisconfigurationException(f"CorruptionSuite batch_size={batch_size} must be positive or null")
        for patch in occlusion_patches:
            pixels = isinstance(patch, int) and not isinstance(patch, bool) and patch >= 1
            if not (pixels or isinstance(patch, float) and 0 < patch < 1):
                raise MisconfigurationException(
                    f"CorruptionSuite occlusion_patches entry {patch!r} must be a pixel count >= 1 "
                    "or a fraction in (0, 1)"
                )
        if occlusion_positions < 1:
            raise MisconfigurationException(
                f"CorruptionSuite occlusion_positions={occlusion_positions} must be at least 1"
            )
        self.baseline = None if baseline is None else load_baseline(baseline)
        self._mce_set = [c for c in self.corruptions if c in STANDARD] or list(self.corruptions)
        if self.baseline is not None and self.severities:
            probe = {c: dict.fromkeys(self.severities, 0.0) for c in self._mce_set}
            corruption_errors(probe, self.baseline)  # raises ConfigError naming what the baseline lacks
        self.seed = seed
        self.batch_size = batch_size
        self.occlusion_patches = list(occlusion_patches)
        self.occlusion_positions = occlusion_positions
        self.occlusion_fill = occlusion_fill

    def reset(self) -> None:
        """Forget the occlusion positions seen; per-sample results live in the suite's store, cleared by the base."""
        self._occlusion_keys: list[tuple[int, int, int]] = []

    def _patch_pixels(self, patch: int | float, side: int) -> int:
        pixels = patch if isinstance(patch, int) else max(1, round(patch * side))
        if pixels > side:
            raise ConfigError(
                f"evaluation.corruption.occlusion_patches: {patch} is larger than the {side}-pixel images"
            )
        return pixels

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Classify the clean, corrupted and occluded versions of the batch and store per-sample correctness."""
        chunk = self.batch_size or x.shape[0]
        for start in range(0, x.shape[0], chunk):
            xs, ys, ids = x[start:start + chunk], y[start:start + chunk], sample_ids[start:start + chunk]
            self.store("clean", model(xs).argmax(1) == ys, ids)
            for name in self.corruptions:
                for severity in self.severities:
                    corrupted = corrupt(xs, name, severity, seed=self.seed, sample_ids=ids)
                    self.store(f"{name}/{severity}", model(corrupted).argmax(1) == ys, ids)
            self._occlusion(model, xs, ys, ids)

    def _occlusion(self, model: nn.Module, x: Tensor, y: Tensor, ids: Tensor) -> None:
        height, width = x.shape[-2:]
        for patch in self.occlusion_patches:
            pixels = self._patch_pixels(patch, min(height, width))
            for top in occlusion_grid(height, pixels, self.occlusion_positions):
                for left in occlusion_grid(width, pixels, self.occlusion_positions):
                    key = (pixels, top, left)
                    if key not in self._occlusion_keys:
                        self._occlusion_keys.append(key)
                    covered = occlude(x, pixels, top, left, self.occlusion_fill)
                    self.store(f"occlusion/{pixels}/{top},{left}", model(covered).argmax(1) == y, ids)

    def errors(self) -> dict[str, dict[int, float]]:
        """``{corruption: {severity: error}}`` of everything seen since the last reset.

        Example:
            >>> CorruptionSuite(corruptions=["fog"]).errors()  # doctest: +SKIP
            {'fog': {1: 0.31, 2: 0.35, 3: 0.40, 4: 0.46, 5: 0.58}}
        """
        return {
            name: {s: 1 - float(self.stored(f"{name}/{s}").float().mean()) for s in self.severities}
            for name in self.corruptions
        }

    def compute(self) -> list[Metric]:
        """The error table, mean errors, mCE, relative mCE and occlusion accuracies."""
        if "clean" not in self._stored:
            return []
        metrics = []
        errors = self.errors() if self.severities else {}
        for name, by_severity in errors.items():
            for severity, error in by_severity.items():
                metrics.append(Metric(self.suite, "error", error, {"corruption": name, "severity": severity}))
        for name, error in mean_errors(errors).items():
            metrics.append(Metric(self.suite, "mean_error", error, {"corruption": name}))
        scored = {name: errors[name] for name in self._mce_set if name in errors}
        if scored and self.baseline is None:
            metrics.append(Metric(self.suite, "mce", unnormalized_mce(scored), {"baseline": "none"}))
        elif scored:
            metrics.append(Metric(self.suite, "mce", mce(scored, self.baseline), {"baseline": self.baseline.name}))
            if self.baseline.clean_error is not None:
                clean_error = 1 - float(self.stored("clean").float().mean())
                value = relative_mce(scored, clean_error, self.baseline)
                metrics.append(Metric(self.suite, "relative_mce", value, {"baseline": self.baseline.name}))
        metrics.extend(self._occlusion_metrics())
        undefined = [m for m in metrics if not math.isfinite(m.value)]
        for metric in undefined:
            rank_zero_warn(f"{metric.key} {metric.context} is undefined (the baseline's error does not grow under "
                           "corruption: a zero denominator) and is left out of the report")
        return [m for m in metrics if math.isfinite(m.value)]

    def _occlusion_metrics(self) -> list[Metric]:
        metrics, by_patch = [], {}
        for pixels, top, left in self._occlusion_keys:
            accuracy = float(self.stored(f"occlusion/{pixels}/{top},{left}").float().mean())
            by_patch.setdefault(pixels, []).append(accuracy)
            context = {"patch": pixels, "position": f"{top},{left}"}
            metrics.append(Metric(self.suite, "occlusion_accuracy", accuracy, context))
        for pixels, values in by_patch.items():
            context = {"patch": pixels, "position": "mean"}
            metrics.append(Metric(self.suite, "occlusion_accuracy", sum(values) / len(values), context))
        return metrics
