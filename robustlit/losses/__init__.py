"""Loss functions (pure PyTorch)."""

from robustlit.losses.bi_tempered import bi_tempered_logistic_loss, exp_t, log_t, tempered_softmax
from robustlit.losses.divergences import entropy, js_divergence, kl_divergence
from robustlit.losses.focal import focal_loss
from robustlit.losses.huber import huberised_cross_entropy
from robustlit.losses.mart import mart_loss, mart_regularizer
from robustlit.losses.penalties import (
    confidence_penalty,
    input_gradient_penalty,
    jacobian_penalty,
    l1_penalty,
    orthogonality_penalty,
    parseval_retraction,
)
from robustlit.losses.soft_ce import label_smoothing_targets, one_hot_targets, soft_cross_entropy
from robustlit.losses.trades import trades_loss
from robustlit.losses.vat import vat_loss

__all__ = ["label_smoothing_targets", "one_hot_targets", "soft_cross_entropy"]
__all__ += [
    "bi_tempered_logistic_loss",
    "confidence_penalty",
    "entropy",
    "exp_t",
    "focal_loss",
    "huberised_cross_entropy",
    "input_gradient_penalty",
    "jacobian_penalty",
    "js_divergence",
    "kl_divergence",
    "l1_penalty",
    "log_t",
    "mart_loss",
    "mart_regularizer",
    "orthogonality_penalty",
    "parseval_retraction",
    "tempered_softmax",
    "trades_loss",
    "vat_loss",
]
