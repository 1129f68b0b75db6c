"""Certified robustness in pure PyTorch: randomized smoothing, IBP/CROWN-IBP and Lipschitz certificates.

Every method returns a :class:`CertifiedResult` whose ``guarantee`` says whether it is
``"deterministic"`` (IBP, CROWN-IBP, CROWN, Lipschitz margins) or ``"probabilistic(α)"`` (smoothing).

Example:
    >>> import torch
    >>> from robustlit.certify import certify_linf, smoothed_certify
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> certify_linf(net, torch.rand(2, 1, 2, 2), [0.01]).guarantee
    'deterministic'
"""

from robustlit.certify.crown import crown_bounds
from robustlit.certify.graph import BoundGraph, Bounds, UnsupportedLayerError
from robustlit.certify.ibp import input_bounds, interval_bounds, margin_spec, robust_cross_entropy
from robustlit.certify.lipschitz import (
    conv_norm_upper_bound,
    conv_operator_norm,
    lipschitz_bound,
    lipschitz_certify,
    power_iteration,
)
from robustlit.certify.result import ABSTAIN, DETERMINISTIC, CertifiedResult, probabilistic
from robustlit.certify.schedule import smoothed_ramp
from robustlit.certify.smoothing import (
    certify_from_counts,
    clopper_pearson_lower,
    predict_from_counts,
    smoothed_certify,
    smoothed_predict,
    smoothing_counts,
)
from robustlit.certify.verify import METHODS, certify_linf, margin_lower_bounds, verified, verified_error

__all__ = [
    "ABSTAIN",
    "DETERMINISTIC",
    "METHODS",
    "BoundGraph",
    "Bounds",
    "CertifiedResult",
    "UnsupportedLayerError",
    "certify_from_counts",
    "certify_linf",
    "clopper_pearson_lower",
    "conv_norm_upper_bound",
    "conv_operator_norm",
    "crown_bounds",
    "input_bounds",
    "interval_bounds",
    "lipschitz_bound",
    "lipschitz_certify",
    "margin_lower_bounds",
    "margin_spec",
    "power_iteration",
    "predict_from_counts",
    "probabilistic",
    "robust_cross_entropy",
    "smoothed_certify",
    "smoothed_predict",
    "smoothed_ramp",
    "smoothing_counts",
    "verified",
    "verified_error",
]
