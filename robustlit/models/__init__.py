"""Model architectures, the model factory and checkpoint loading; all models take images in [0, 1]."""

from robustlit.models.cifar import CIFAR10_MEAN, CIFAR10_STD, PreActResNet18, SmallCNN, WideResNet
from robustlit.models.factory import (
    MODELS,
    SPEC_KEYS,
    arch_names,
    build_model,
    describe_model,
    register_model,
)
from robustlit.models.layers import Normalize
from robustlit.models.loading import ExportedModule, load_checkpoint
from robustlit.models.timm_wrapper import TimmClassifier

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "MODELS",
    "SPEC_KEYS",
    "ExportedModule",
    "Normalize",
    "PreActResNet18",
    "SmallCNN",
    "TimmClassifier",
    "WideResNet",
    "arch_names",
    "build_model",
    "describe_model",
    "load_checkpoint",
    "register_model",
]
