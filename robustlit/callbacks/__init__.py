"""Regularizers as Lightning callbacks (one file per family)."""

from robustlit.callbacks.adversarial_training import AdversarialTraining
from robustlit.callbacks.base import BatchTransformCallback
from robustlit.callbacks.label_smoothing import LabelSmoothing
from robustlit.callbacks.mixup import Mixup, mixup_batch

__all__ = ["AdversarialTraining", "BatchTransformCallback", "LabelSmoothing", "Mixup", "mixup_batch"]
