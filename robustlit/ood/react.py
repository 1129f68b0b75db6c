"""Energy score after clipping the penultimate activations (Sun et al., "ReAct", NeurIPS 2021)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from robustlit.errors import ConfigError, DataError
from robustlit.ood.base import OODDetector
from robustlit.ood.streaming import Reservoir
from robustlit.ood.vim import linear_head


class ReAct(OODDetector):
    """``logsumexp(W·min(h, c) + b)``: the energy of the head applied to clipped penultimate features.

    The clip ``c`` is the ``percentile``-th percentile of all ID activations (90 in the paper). The paper
    takes it over the whole training set; here it is taken over a seeded subsample of at most
    ``max_samples`` feature vectors, so memory stays bounded.

    Args:
        model: The classifier; its final layer must be an ``nn.Linear``.
        percentile: Percentile of the ID activations used as the clip, in (0, 100].
        max_samples: Subsample size for the percentile.
        seed: Seed of the subsample.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
        >>> detector = ReAct(net).fit([(torch.rand(40, 3, 2, 2), torch.zeros(40, dtype=torch.long))])
        >>> detector.score(torch.rand(5, 3, 2, 2)).shape
        torch.Size([5])
    """

    name = "react"
    requires_fit = True
    uses_features = True

    def __init__(
        self, model: nn.Module, percentile: float = 90.0, max_samples: int = 20000, seed: int = 0,
        layer: str | None = None,
    ) -> None:
        super().__init__(model, layer)
        self.head = linear_head(self)
        if not 0 < percentile <= 100:
            raise ConfigError(f"react percentile={percentile} must be in (0, 100]")
        self.percentile = percentile
        self.max_samples = max_samples
        self.seed = seed
        self.clip: float | None = None

    def start_fit(self) -> None:
        """Empty the subsample."""
        self._reservoir = Reservoir(self.max_samples, self.seed)
        self.fitted = False

    def partial_fit(self, features: Tensor | None, logits: Tensor, labels: Tensor) -> None:
        """Offer a batch's features to the subsample."""
        self._reservoir.add(features.detach().float())

    def finish_fit(self) -> None:
        """The clip value."""
        if self._reservoir.seen == 0:
            raise DataError("react needs ID samples to fit")
        self.clip = float(np.percentile(self._reservoir.rows.numpy(), self.percentile))
        self.fitted = True

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """Energy of the head on ``min(features, clip)``."""
        self._check_fitted()
        clipped = features.clamp_max(self.clip).to(self.head.weight.dtype)
        return torch.logsumexp(self.head(clipped).float(), dim=1)
