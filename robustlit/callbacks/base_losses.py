"""Robust replacements of the cross-entropy base loss: focal, bi-tempered and Huberised losses."""

from __future__ import annotations

from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.callbacks.loss_term import BaseLossCallback
from robustlit.losses import bi_tempered_logistic_loss, focal_loss, huberised_cross_entropy


class FocalLoss(BaseLossCallback):
    """Train with the focal loss instead of cross-entropy (base-loss replacement; needs RobustModule).

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; Mukhoti et al.,
    "Calibrating Deep Neural Networks using Focal Loss", NeurIPS 2020 (γ = 3 calibrates well).

    Args:
        gamma: Focusing parameter γ ≥ 0; 0 gives the cross-entropy.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[FocalLoss(gamma=2.0)])  # doctest: +SKIP
    """

    name = "focal"

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise MisconfigurationException(f"FocalLoss needs gamma >= 0, got {gamma}")
        self.gamma = gamma

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """:func:`robustlit.losses.focal_loss`."""
        return focal_loss(logits, targets, gamma=self.gamma)


class BiTemperedLoss(BaseLossCallback):
    """Train with the bi-tempered logistic loss (base-loss replacement; needs RobustModule).

    Reference: Amid et al., "Robust Bi-Tempered Logistic Loss Based on Bregman Divergences", NeurIPS 2019.

    Args:
        t1: Loss temperature in [0, 1]; below 1 the loss is bounded (robust to label noise).
        t2: Softmax temperature > 0; above 1 the tail is heavier.
        num_iters: Iterations of the tempered-softmax normalization.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[BiTemperedLoss(t1=0.8, t2=1.2)])  # doctest: +SKIP
    """

    name = "bi_tempered"

    def __init__(self, t1: float = 0.8, t2: float = 1.2, num_iters: int = 5) -> None:
        super().__init__()
        if not 0.0 <= t1 <= 1.0:
            raise MisconfigurationException(f"BiTemperedLoss needs 0 <= t1 <= 1, got t1={t1}")
        if t2 <= 0:
            raise MisconfigurationException(f"BiTemperedLoss needs t2 > 0, got t2={t2}")
        if num_iters < 1:
            raise MisconfigurationException(f"BiTemperedLoss needs num_iters >= 1, got {num_iters}")
        self.t1, self.t2, self.num_iters = t1, t2, num_iters

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """:func:`robustlit.losses.bi_tempered_logistic_loss`."""
        return bi_tempered_logistic_loss(logits, targets, t1=self.t1, t2=self.t2, num_iters=self.num_iters)


class HuberLoss(BaseLossCallback):
    """Train with the partially Huberised cross-entropy (base-loss replacement; needs RobustModule).

    Reference: Menon et al., "Can gradient clipping mitigate label noise?", ICLR 2020. The loss is
    linear in the class probability below ``1/τ``, which caps each example's gradient, like the Huber
    loss's linear tail.

    Args:
        tau: Gradient cap τ > 1; larger values approach the cross-entropy.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[HuberLoss(tau=10.0)])  # doctest: +SKIP
    """

    name = "huber"

    def __init__(self, tau: float = 10.0) -> None:
        super().__init__()
        if tau <= 1:
            raise MisconfigurationException(f"HuberLoss needs tau > 1, got {tau}")
        self.tau = tau

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """:func:`robustlit.losses.huberised_cross_entropy`."""
        return huberised_cross_entropy(logits, targets, tau=self.tau)
