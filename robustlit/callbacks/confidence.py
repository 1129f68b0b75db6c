"""Output-entropy regularizers: the confidence penalty and entropy maximization off the data."""

from __future__ import annotations

import math

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.callbacks._state import frozen_batchnorm_statistics
from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.losses import confidence_penalty, entropy
from robustlit.module import StepContext

SOURCES = ("uniform", "permuted")


class ConfidencePenalty(LossTermCallback):
    """Add ``β · max(0, Γ − H(p(x)))`` (``−β·H`` when Γ = 0) to the loss (loss term; needs RobustModule).

    Reference: Pereyra et al., "Regularizing Neural Networks by Penalizing Confident Output
    Distributions", 2017 (β between 0.1 and 1 in their experiments).

    Args:
        weight: β.
        threshold: Entropy threshold Γ in nats; 0 penalizes confidence everywhere.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[ConfidencePenalty(weight=0.1)])  # doctest: +SKIP
    """

    name = "confidence_penalty"

    def __init__(self, weight: float = 0.1, threshold: float = 0.0) -> None:
        super().__init__(weight)
        if threshold < 0:
            raise MisconfigurationException(f"ConfidencePenalty needs threshold >= 0, got {threshold}")
        self.threshold = threshold

    def term(self, ctx: StepContext) -> Tensor:
        """:func:`robustlit.losses.confidence_penalty` of this step's logits."""
        assert ctx.logits is not None
        return confidence_penalty(ctx.logits, self.threshold)


class EntropyMaximization(LossTermCallback):
    """Maximize predictive entropy on synthetic off-data inputs (loss term; needs RobustModule).

    Reference: Hein, Andriushchenko & Bitterwolf, "Why ReLU Networks Yield High-Confidence Predictions
    Far Away From the Training Data", CVPR 2019 (CEDA trains low confidence on uniform noise and
    pixel-permuted images). Each step draws one synthetic batch like the training batch and adds
    ``weight · mean(log K − H(p(u)))`` (zero when the outputs on ``u`` are uniform). The synthetic
    pass leaves BatchNorm running statistics unchanged.

    Args:
        weight: Multiplier of the term.
        source: ``"uniform"`` (uniform noise in [0, 1]) or ``"permuted"`` (each image's pixels shuffled).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[EntropyMaximization(weight=0.5)])  # doctest: +SKIP
    """

    name = "entropy_max"

    def __init__(self, weight: float = 0.5, source: str = "uniform") -> None:
        super().__init__(weight)
        if source not in SOURCES:
            raise MisconfigurationException(
                f"EntropyMaximization source={source!r}; choose one of {', '.join(SOURCES)}"
            )
        self.source = source

    def off_data(self, inputs: Tensor) -> Tensor:
        """A synthetic batch shaped like ``inputs``; override for other outlier sources."""
        if self.source == "uniform":
            return torch.rand_like(inputs)
        flat = inputs.flatten(2)
        order = torch.argsort(torch.rand(flat.shape[0], 1, flat.shape[2], device=inputs.device), dim=2)
        return flat.gather(2, order.expand_as(flat)).view_as(inputs)

    def term(self, ctx: StepContext) -> Tensor:
        """``mean(log K − H(p(u)))`` on a fresh synthetic batch ``u``."""
        with frozen_batchnorm_statistics(ctx.module):
            logits = ctx.module(self.off_data(ctx.clean_inputs))
        return (math.log(logits.shape[1]) - entropy(logits)).mean()
