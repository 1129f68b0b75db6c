"""Output-consistency regularizers: virtual adversarial training and augmentation consistency."""

from __future__ import annotations

from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.callbacks._state import frozen_batchnorm_statistics
from robustlit.callbacks.augmentations import augment_each
from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.data.augment import crop_flip
from robustlit.losses import kl_divergence, vat_loss
from robustlit.module import StepContext


class VAT(LossTermCallback):
    """Virtual adversarial training: add ``α · KL(p(x) ‖ p(x + r_vadv))`` (loss term; needs RobustModule).

    Reference: Miyato et al., "Virtual Adversarial Training", TPAMI 2018 (α = 1, one power iteration,
    ξ = 1e-6). The perturbed passes run in training mode but leave BatchNorm running statistics
    unchanged, as in the paper's code. Costs two extra forward and one extra backward pass.

    Args:
        weight: α.
        eps: L2 radius of the virtual adversarial perturbation, in input units ([0, 1] images).
        xi: Finite-difference scale of the power iteration.
        power_iterations: Rounds of power iteration.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[VAT(eps=1.0)])  # doctest: +SKIP
    """

    name = "vat"

    def __init__(self, weight: float = 1.0, eps: float = 1.0, xi: float = 1e-6, power_iterations: int = 1) -> None:
        super().__init__(weight)
        if eps <= 0 or xi <= 0:
            raise MisconfigurationException(f"VAT needs eps > 0 and xi > 0, got eps={eps}, xi={xi}")
        if power_iterations < 1:
            raise MisconfigurationException(f"VAT needs power_iterations >= 1, got {power_iterations}")
        self.eps, self.xi, self.power_iterations = eps, xi, power_iterations

    def term(self, ctx: StepContext) -> Tensor:
        """:func:`robustlit.losses.vat_loss` around this step's inputs."""
        assert ctx.logits is not None
        with frozen_batchnorm_statistics(ctx.module):
            return vat_loss(ctx.module, ctx.inputs, ctx.logits, self.eps, self.xi, self.power_iterations)


class Consistency(LossTermCallback):
    """Add ``λ · KL(p(x) ‖ p(aug(x)))`` with ``p(x)`` held fixed (loss term; needs RobustModule).

    Reference: Zheng et al., "Improving the Robustness of Deep Neural Networks via Stability Training",
    CVPR 2016; Xie et al., "Unsupervised Data Augmentation for Consistency Training", NeurIPS 2020
    (the stop-gradient on the clean prediction). The augmentation is a padded random crop with an
    optional flip per image; override :meth:`augment` for another one. One extra forward pass.

    Args:
        weight: λ.
        padding: Pixels of zero padding before the random crop.
        flip: Also flip horizontally with probability 0.5 (wrong for digits and text).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[Consistency(weight=1.0)])  # doctest: +SKIP
    """

    name = "consistency"

    def __init__(self, weight: float = 1.0, padding: int = 4, flip: bool = False) -> None:
        super().__init__(weight)
        if padding < 1:
            raise MisconfigurationException(f"Consistency needs padding >= 1, got {padding}")
        self.padding, self.flip = padding, flip

    def augment(self, images: Tensor) -> Tensor:
        """The augmented view of a batch."""
        return augment_each(images, crop_flip(images.shape[-1], self.padding, "constant", self.flip))

    def term(self, ctx: StepContext) -> Tensor:
        """KL between the (fixed) prediction on the inputs and the prediction on their augmented view."""
        assert ctx.logits is not None
        return kl_divergence(ctx.logits.detach(), ctx.module(self.augment(ctx.inputs.detach())))
