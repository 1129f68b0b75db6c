"""Evaluation metrics in pure PyTorch."""

from robustlit.metrics.calibration import (
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from robustlit.metrics.corruption import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    Baseline,
    corruption_errors,
    load_baseline,
    mce,
    mean_errors,
    relative_mce,
    unnormalized_mce,
)
from robustlit.metrics.ood import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_metrics, roc_curve
from robustlit.metrics.selective import (
    aurc,
    coverage_at_risk,
    excess_aurc,
    optimal_aurc,
    risk_coverage_curve,
)
from robustlit.metrics.temperature import TemperatureFit, fit_temperature

__all__ = [
    "ALEXNET_CLEAN_ERROR",
    "ALEXNET_ERRORS",
    "Baseline",
    "corruption_errors",
    "load_baseline",
    "mce",
    "mean_errors",
    "relative_mce",
    "unnormalized_mce",
    "TemperatureFit",
    "adaptive_calibration_error",
    "aupr_in",
    "aupr_out",
    "aurc",
    "auroc",
    "brier_score",
    "classwise_calibration_error",
    "coverage_at_risk",
    "excess_aurc",
    "fit_temperature",
    "fpr_at_tpr",
    "ood_metrics",
    "optimal_aurc",
    "risk_coverage_curve",
    "roc_curve",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
]
