"""Regularizers as Lightning callbacks (one file per family)."""

from robustlit.callbacks.adversarial_augmentation import AdversarialAugmentation
from robustlit.callbacks.adversarial_objectives import MART, TRADES
from robustlit.callbacks.adversarial_training import AdversarialTraining
from robustlit.callbacks.augmentations import AugMix, ColorJitter, ImageAugmentation, RandAugment, augment_each
from robustlit.callbacks.base import BatchTransformCallback
from robustlit.callbacks.base_losses import BiTemperedLoss, FocalLoss, HuberLoss
from robustlit.callbacks.confidence import ConfidencePenalty, EntropyMaximization
from robustlit.callbacks.consistency import VAT, Consistency
from robustlit.callbacks.cutmix import CutMix, cutmix_batch, cutmix_box
from robustlit.callbacks.dro import ChiSquareDRO, CVaRDRO, GroupDRO
from robustlit.callbacks.fast_at import FastAdversarialTraining, n_fgsm_examples
from robustlit.callbacks.gaussian_noise import GaussianNoise
from robustlit.callbacks.gradient_penalties import InputGradientPenalty, JacobianPenalty
from robustlit.callbacks.ibp import IBPTraining
from robustlit.callbacks.invariance import IRM, VREx
from robustlit.callbacks.label_smoothing import LabelSmoothing
from robustlit.callbacks.layer_noise import DropConnect, Dropout, LayerHooks, NoiseInjection
from robustlit.callbacks.loss_term import BaseLossCallback, LossTermCallback
from robustlit.callbacks.manifold_mixup import ManifoldMixup
from robustlit.callbacks.mixup import Mixup, mixup_batch
from robustlit.callbacks.parameter_penalties import L1Penalty, ParameterPenalty, Parseval
from robustlit.callbacks.sam import ASAM, SAM
from robustlit.callbacks.spectral_norm import SpectralNorm
from robustlit.callbacks.stochastic_depth import StochasticDepth
from robustlit.callbacks.swa import SWA
from robustlit.callbacks.swag import SWAG

__all__ = ["ASAM", "SAM", "AdversarialTraining", "BatchTransformCallback", "LabelSmoothing", "Mixup", "mixup_batch"]
__all__ += [  # regularizers of the parameter, architecture, data and objective levels
    "MART",
    "TRADES",
    "VAT",
    "AdversarialAugmentation",
    "AugMix",
    "BaseLossCallback",
    "BiTemperedLoss",
    "ColorJitter",
    "ConfidencePenalty",
    "Consistency",
    "CutMix",
    "DropConnect",
    "Dropout",
    "EntropyMaximization",
    "FastAdversarialTraining",
    "FocalLoss",
    "HuberLoss",
    "ImageAugmentation",
    "InputGradientPenalty",
    "JacobianPenalty",
    "L1Penalty",
    "LayerHooks",
    "LossTermCallback",
    "ManifoldMixup",
    "NoiseInjection",
    "ParameterPenalty",
    "Parseval",
    "RandAugment",
    "StochasticDepth",
    "augment_each",
    "cutmix_batch",
    "cutmix_box",
    "n_fgsm_examples",
]
__all__ += ["GaussianNoise", "IBPTraining", "SpectralNorm"]  # certified training
__all__ += ["IRM", "ChiSquareDRO", "CVaRDRO", "GroupDRO", "VREx"]  # distributional
__all__ += ["SWA", "SWAG"]  # optimization level
