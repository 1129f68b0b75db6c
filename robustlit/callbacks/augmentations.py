"""Image augmentations as batch transforms: RandAugment, color jitter and AugMix (with its JSD loss)."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torchvision.transforms import v2

from robustlit.callbacks.base import BatchTransformCallback
from robustlit.callbacks.loss_term import require_robust_module
from robustlit.losses import js_divergence
from robustlit.module import RobustModule, StepContext


def augment_each(images: Tensor, augmentation: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``augmentation`` to every image of a batch separately, so each draws its own parameters.

    Example:
        >>> out = augment_each(torch.rand(4, 3, 8, 8), v2.RandomHorizontalFlip())
        >>> out.shape
        torch.Size([4, 3, 8, 8])
    """
    return torch.stack([augmentation(image) for image in images]).clamp(0.0, 1.0)


class ImageAugmentation(BatchTransformCallback):
    """Augment every training image separately with a torchvision transform (batch transform; any module).

    Runs before mixing and adversarial examples (``order = 5``), like a data-loader augmentation but
    on the training device. Randomness comes from torch's global generator, which Lightning seeds.
    Subclasses build the transform in :meth:`build`.

    Example:
        >>> class Flip(ImageAugmentation):
        ...     def build(self):
        ...         return v2.RandomHorizontalFlip()
        >>> Flip().augment(torch.rand(2, 1, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
    """

    order = 5

    def __init__(self) -> None:
        super().__init__()
        self._augmentation = self.build()

    def build(self) -> Callable[[Tensor], Tensor]:
        """The per-image transform, mapping a ``(C, H, W)`` float tensor in [0, 1] to another."""
        raise NotImplementedError

    def augment(self, images: Tensor) -> Tensor:
        """Augment a batch ``(N, C, H, W)``."""
        return augment_each(images, self._augmentation)

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Augmented inputs, unchanged targets."""
        return self.augment(ctx.inputs), ctx.targets


class RandAugment(ImageAugmentation):
    """RandAugment: ``num_ops`` random operations at a shared magnitude (batch transform; any module).

    Reference: Cubuk et al., "RandAugment: Practical Automated Data Augmentation with a Reduced Search
    Space", NeurIPS 2020 workshop (N = 2, M = 9 is a common CIFAR setting); torchvision's operations.

    Args:
        num_ops: Operations per image N.
        magnitude: Magnitude M, from 0 to ``num_magnitude_bins - 1``.
        num_magnitude_bins: Number of magnitude levels.

    Example:
        >>> RandAugment(num_ops=2, magnitude=9).augment(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31) -> None:
        if num_ops < 1:
            raise MisconfigurationException(f"RandAugment needs num_ops >= 1, got {num_ops}")
        if not 0 <= magnitude < num_magnitude_bins:
            raise MisconfigurationException(
                f"RandAugment needs 0 <= magnitude < num_magnitude_bins={num_magnitude_bins}, got {magnitude}"
            )
        self.num_ops, self.magnitude, self.num_magnitude_bins = num_ops, magnitude, num_magnitude_bins
        super().__init__()

    def build(self) -> Callable[[Tensor], Tensor]:
        """The torchvision ``RandAugment``."""
        return v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude,
                              num_magnitude_bins=self.num_magnitude_bins)


class ColorJitter(ImageAugmentation):
    """Random brightness, contrast, saturation and hue per image (batch transform; any module).

    Reference: Krizhevsky et al. 2012 (colour augmentation); torchvision's ``ColorJitter``. Saturation
    and hue leave grayscale images unchanged. ``style`` additionally jitters each channel's mean and
    standard deviation (a pixel-level version of the feature-statistics "style" perturbations of
    Li et al., "Uncertainty Modeling for Out-of-Distribution Generalization", ICLR 2022): channel
    ``c`` becomes ``(x_c − μ_c)·σ_c·(1 + s·ε₁) / σ_c + μ_c·(1 + s·ε₂)`` with ``ε ~ N(0, 1)``.

    Args:
        brightness: Brightness factor range ``[1 − b, 1 + b]``.
        contrast: Contrast factor range ``[1 − c, 1 + c]``.
        saturation: Saturation factor range ``[1 − s, 1 + s]``.
        hue: Hue shift range ``[−h, h]``, at most 0.5.
        style: Relative standard deviation of the channel-statistics jitter (0: off).

    Example:
        >>> ColorJitter(brightness=0.4).augment(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
                 style: float = 0.0) -> None:
        for option, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation),
                              ("style", style)):
            if value < 0:
                raise MisconfigurationException(f"ColorJitter needs {option} >= 0, got {value}")
        if not 0 <= hue <= 0.5:
            raise MisconfigurationException(f"ColorJitter needs 0 <= hue <= 0.5, got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue, self.style = (
            brightness, contrast, saturation, hue, style)
        super().__init__()

    def build(self) -> Callable[[Tensor], Tensor]:
        """The torchvision ``ColorJitter``."""
        return v2.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue)

    def augment(self, images: Tensor) -> Tensor:
        """Colour jitter per image, then the channel-statistics jitter."""
        images = super().augment(images)
        return images if self.style == 0 else self.jitter_style(images)

    def jitter_style(self, images: Tensor) -> Tensor:
        """Rescale each image's channel means and standard deviations by random factors ``1 + style·ε``."""
        mean = images.mean(dim=(2, 3), keepdim=True)
        std = images.std(dim=(2, 3), keepdim=True)
        new_std = std * (1.0 + self.style * torch.randn_like(std))
        new_mean = mean * (1.0 + self.style * torch.randn_like(mean))
        return ((images - mean) / std.clamp_min(1e-6) * new_std + new_mean).clamp(0.0, 1.0)


class AugMix(ImageAugmentation):
    """AugMix augmentation with its Jensen–Shannon consistency loss (RobustModule; any module if jsd_weight=0).

    With ``jsd_weight > 0`` it needs RobustModule; with ``jsd_weight = 0`` it is a plain batch
    transform that works on any module.

    Reference: Hendrycks et al., "AugMix: A Simple Data Processing Method to Improve Robustness and
    Uncertainty", ICLR 2020 (severity 3, width 3, random depth 1–3, α = 1, λ = 12); torchvision's
    ``AugMix`` operations. With ``jsd_weight > 0`` the model trains on the clean batch with its base
    loss, and a loss term adds ``λ · JS(p(x), p(x_aug1), p(x_aug2))`` for two AugMix views (one extra
    forward pass of the two views together). With ``jsd_weight = 0`` the batch is replaced by one
    AugMix view.

    Args:
        severity: Strength of the operations (1–10).
        mixture_width: Augmentation chains mixed per image.
        chain_depth: Operations per chain; -1 draws 1–3.
        alpha: Dirichlet and Beta concentration of the mixing weights.
        jsd_weight: λ of the consistency loss (0: augmentation only).

    Example:
        >>> AugMix(jsd_weight=0).augment(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    name = "augmix"

    def __init__(self, severity: int = 3, mixture_width: int = 3, chain_depth: int = -1, alpha: float = 1.0,
                 jsd_weight: float = 12.0) -> None:
        if not 1 <= severity <= 10:
            raise MisconfigurationException(f"AugMix needs 1 <= severity <= 10, got {severity}")
        if mixture_width < 1 or chain_depth == 0 or chain_depth < -1:
            raise MisconfigurationException(
                f"AugMix needs mixture_width >= 1 and chain_depth >= 1 (or -1); got {mixture_width}, {chain_depth}"
            )
        if alpha <= 0 or jsd_weight < 0:
            raise MisconfigurationException(f"AugMix needs alpha > 0 and jsd_weight >= 0; got {alpha}, {jsd_weight}")
        self.severity, self.mixture_width, self.chain_depth, self.alpha = severity, mixture_width, chain_depth, alpha
        self.jsd_weight = jsd_weight
        super().__init__()
        self._term_on: RobustModule | None = None

    def build(self) -> Callable[[Tensor], Tensor]:
        """The torchvision ``AugMix``."""
        return v2.AugMix(severity=self.severity, mixture_width=self.mixture_width, chain_depth=self.chain_depth,
                         alpha=self.alpha)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Register the JSD term (``jsd_weight > 0``) or the augmentation (``jsd_weight = 0``)."""
        if stage != "fit":
            return
        if self.jsd_weight == 0:
            super().setup(trainer, pl_module, stage)
            return
        module = require_robust_module(self, pl_module)
        module.register_loss_term("augmix_jsd", self.jsd_term, weight=self.jsd_weight)
        self._term_on = module

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Unregister whatever :meth:`setup` registered."""
        if self._term_on is not None:
            self._term_on.unregister("augmix_jsd")
            self._term_on = None
        super().teardown(trainer, pl_module, stage)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        """Plain modules get augmented batches only when the JSD loss is off."""
        if self._term_on is None:
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def jsd_term(self, ctx: StepContext) -> Tensor:
        """``JS(p(x), p(aug1), p(aug2))`` with this step's logits as ``p(x)``."""
        assert ctx.logits is not None
        views = torch.cat([self.augment(ctx.inputs.detach()), self.augment(ctx.inputs.detach())])
        first, second = ctx.module(views).chunk(2)
        return js_divergence(ctx.logits, first, second)
