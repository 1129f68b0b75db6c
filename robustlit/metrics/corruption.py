"""Corruption errors and mCE (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions").

Errors are fractions in [0, 1], keyed ``{corruption: {severity: error}}``. With a baseline ``b``:

* corruption error ``CE_c = Σ_s E(s, c) / Σ_s E_b(s, c)`` (over the severities evaluated);
* ``mCE`` = mean of ``CE_c`` over the corruptions;
* relative ``CE_c = Σ_s (E(s, c) − E_clean) / Σ_s (E_b(s, c) − E_b,clean)`` and relative mCE its mean.

Without a baseline (the usual CIFAR-10-C convention) the "mCE" is the plain mean error over corruptions and
severities, :func:`unnormalized_mce`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from robustlit.errors import ConfigError

Errors = Mapping[str, Mapping[int, float]]

# AlexNet's ImageNet-C errors per corruption, averaged over the 5 severities (Hendrycks & Dietterich 2019).
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERROR = 0.4348


@dataclass(frozen=True)
class Baseline:
    """Errors of the reference model that mCE is normalized by.

    Attributes:
        name: Label for the report context (``"alexnet"`` or the baseline's path or name).
        errors: ``{corruption: {severity: error}}``.
        clean_error: Clean error of the baseline, needed for relative mCE (None if unknown).

    Example:
        >>> Baseline.alexnet().errors["fog"][3]
        0.819324
    """

    name: str
    errors: dict[str, dict[int, float]]
    clean_error: float | None = None

    @classmethod
    def alexnet(cls) -> Baseline:
        """AlexNet on ImageNet-C.

        Only per-corruption averages are published, so every severity gets the average; with all five
        severities evaluated this gives exactly the published CE.
        """
        errors = {name: dict.fromkeys(range(1, 6), error) for name, error in ALEXNET_ERRORS.items()}
        return cls("alexnet", errors, ALEXNET_CLEAN_ERROR)


def mean_errors(errors: Errors) -> dict[str, float]:
    """The mean error over severities of each corruption.

    Example:
        >>> mean_errors({"fog": {1: 0.1, 2: 0.3}})
        {'fog': 0.2}
    """
    return {name: sum(by_severity.values()) / len(by_severity) for name, by_severity in errors.items() if by_severity}


def unnormalized_mce(errors: Errors) -> float:
    """Mean over corruptions of the mean error over severities (the CIFAR-10-C "mean corruption error").

    Example:
        >>> round(unnormalized_mce({"fog": {1: 0.1, 2: 0.3}, "snow": {1: 0.4, 2: 0.4}}), 6)
        0.3
    """
    means = mean_errors(errors)
    if not means:
        raise ValueError("unnormalized_mce needs at least one corruption with errors")
    return sum(means.values()) / len(means)


def _baseline_sum(name: str, severities: list[int], baseline: Baseline, offset: float) -> float:
    by_severity = baseline.errors.get(name)
    missing = [s for s in severities if by_severity is None or s not in by_severity]
    if missing:
        raise ConfigError(
            f"baseline {baseline.name!r} has no error for {name} at severities {missing}; give a baseline that "
            "covers every evaluated corruption and severity, or evaluate fewer"
        )
    return sum(by_severity[s] - offset for s in severities)


def corruption_errors(errors: Errors, baseline: Baseline) -> dict[str, float]:
    """``CE_c = Σ_s E(s, c) / Σ_s E_b(s, c)`` for every corruption in ``errors``.

    Example:
        >>> b = Baseline("b", {"fog": {1: 0.5, 2: 0.5}})
        >>> corruption_errors({"fog": {1: 0.2, 2: 0.3}}, b)
        {'fog': 0.5}
    """
    out = {}
    for name, by_severity in errors.items():
        severities = sorted(by_severity)
        denominator = _baseline_sum(name, severities, baseline, 0.0)
        out[name] = sum(by_severity[s] for s in severities) / denominator if denominator else math.nan
    return out


def mce(errors: Errors, baseline: Baseline) -> float:
    """Mean corruption error: the mean of :func:`corruption_errors` over corruptions.

    Example:
        >>> b = Baseline("b", {"fog": {1: 0.5}, "snow": {1: 0.4}})
        >>> round(mce({"fog": {1: 0.25}, "snow": {1: 0.4}}, b), 6)
        0.75
    """
    values = list(corruption_errors(errors, baseline).values())
    if not values:
        raise ValueError("mce needs at least one corruption with errors")
    return sum(values) / len(values)


def relative_mce(errors: Errors, clean_error: float, baseline: Baseline) -> float:
    """Relative mCE: mean over corruptions of ``Σ_s (E(s, c) − E_clean) / Σ_s (E_b(s, c) − E_b,clean)``.

    It measures how much accuracy a corruption costs relative to the clean accuracy, against the baseline's
    loss. The clean error is subtracted at each severity, which reproduces the paper's figures (ResNet-50:
    mCE 76.7 %, relative mCE 105 %). The result is NaN when the baseline loses no accuracy on some corruption
    (a zero denominator).

    Example:
        >>> b = Baseline("b", {"fog": {1: 0.6, 2: 0.6}}, clean_error=0.4)
        >>> round(relative_mce({"fog": {1: 0.3, 2: 0.5}}, 0.2, b), 6)
        1.0
    """
    if baseline.clean_error is None:
        raise ConfigError(f"baseline {baseline.name!r} has no clean error, which relative mCE needs")
    values = []
    for name, by_severity in errors.items():
        severities = sorted(by_severity)
        denominator = _baseline_sum(name, severities, baseline, baseline.clean_error)
        numerator = sum(by_severity[s] - clean_error for s in severities)
        values.append(numerator / denominator if denominator else math.nan)
    if not values:
        raise ValueError("relative_mce needs at least one corruption with errors")
    return sum(values) / len(values)


def load_baseline(source: str | Path | Mapping | Baseline) -> Baseline:
    """A baseline from ``"alexnet"``, a ``robustness_report.json`` (or its run folder), or a dict.

    A dict maps corruption names to ``{severity: error}`` (or to one error used at every severity), with an
    optional ``"clean"`` entry for the clean error. A report contributes its ``corruption/error`` rows and
    ``1 − clean/accuracy``.

    Raises:
        ConfigError: If the source is unreadable, has no corruption errors, or has malformed values.

    Example:
        >>> load_baseline({"fog": {1: 0.3}, "clean": 0.1}).errors
        {'fog': {1: 0.3}}
        >>> load_baseline("alexnet").name
        'alexnet'
    """
    if isinstance(source, Baseline):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(source, "dict")
    text = str(source)
    if text.lower() == "alexnet":
        return Baseline.alexnet()
    from robustlit.reporting import ReportError, read_report

    try:
        report = read_report(text)
    except ReportError as error:
        raise ConfigError(
            f"corruption baseline={text}: {error}; pass 'alexnet', a robustness_report.json or a dict"
        ) from error
    errors: dict[str, dict[int, float]] = {}
    for metric in report.metrics:
        if metric.suite == "corruption" and metric.name == "error":
            by_severity = errors.setdefault(str(metric.context["corruption"]), {})
            by_severity[int(metric.context["severity"])] = float(metric.value)
    if not errors:
        raise ConfigError(
            f"corruption baseline={text} has no corruption/error rows; run the corruption suite on the baseline first"
        )
    clean = [m.value for m in report.metrics if m.suite == "clean" and m.name == "accuracy"]
    return Baseline(text, errors, 1 - float(clean[0]) if clean else None)


def _from_mapping(source: Mapping, name: str) -> Baseline:
    errors: dict[str, dict[int, float]] = {}
    clean = None
    try:
        for key, value in source.items():
            if key == "clean":
                clean = float(value)
            elif isinstance(value, Mapping):
                errors[str(key)] = {int(s): float(e) for s, e in value.items()}
            else:
                errors[str(key)] = dict.fromkeys(range(1, 6), float(value))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"corruption baseline {name} is malformed ({error}); use {{corruption: {{severity: error}}}}"
        ) from None
    if not errors:
        raise ConfigError("corruption baseline dict has no corruption errors")
    return Baseline(name, errors, clean)
