"""Distance to the k-th nearest ID training feature after L2 normalization (Sun et al., ICML 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlit.errors import ConfigError, DataError
from robustlit.ood.base import OODDetector
from robustlit.ood.streaming import Reservoir


class KNN(OODDetector):
    """Negative distance from the normalized feature to its ``k``-th nearest neighbour in an ID bank.

    The bank holds at most ``max_bank`` normalized training features, a seeded uniform subsample
    (:class:`~robustlit.ood.streaming.Reservoir`) that is the same whether the fit data comes in one pass
    or in chunks. The paper uses ``k = 50`` with all 50,000 CIFAR-10 training features and scales ``k``
    with the fraction kept (``k = 10`` at 1%); lower ``k`` accordingly for a small bank. Scoring compares
    against the bank in chunks of ``chunk_size`` rows to bound memory.

    Args:
        model: The classifier.
        k: Neighbour rank.
        max_bank: Largest number of stored ID features.
        seed: Seed of the subsample.
        layer: Feature layer (None: the penultimate features).
        chunk_size: Bank rows compared at a time when scoring.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> detector = KNN(net, k=3).fit([(torch.rand(32, 3, 2, 2), torch.zeros(32, dtype=torch.long))])
        >>> bool((detector.score(torch.rand(5, 3, 2, 2)) <= 0).all())
        True
    """

    name = "knn"
    requires_fit = True
    uses_features = True

    def __init__(
        self,
        model: nn.Module,
        k: int = 50,
        max_bank: int = 20000,
        seed: int = 0,
        layer: str | None = None,
        chunk_size: int = 8192,
    ) -> None:
        super().__init__(model, layer)
        if k < 1 or max_bank < k or chunk_size < 1:
            raise ConfigError(f"knn needs k >= 1, max_bank >= k and chunk_size >= 1; got k={k}, max_bank={max_bank}")
        self.k = k
        self.max_bank = max_bank
        self.seed = seed
        self.chunk_size = chunk_size
        self.bank: Tensor | None = None

    def start_fit(self) -> None:
        """Empty the bank."""
        self._reservoir = Reservoir(self.max_bank, self.seed)
        self.fitted = False

    def partial_fit(self, features: Tensor | None, logits: Tensor, labels: Tensor) -> None:
        """Offer a batch's normalized features to the bank."""
        self._device = features.device
        self._reservoir.add(F.normalize(features.float(), dim=1))

    def finish_fit(self) -> None:
        """Freeze the bank."""
        if self._reservoir.seen < self.k:
            raise DataError(f"knn with k={self.k} needs at least {self.k} ID samples, got {self._reservoir.seen}")
        self.bank = self._reservoir.rows.to(self._device)  # kept where the model runs, so scoring moves nothing
        self.fitted = True

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """``−`` the distance to the ``k``-th nearest bank feature."""
        self._check_fitted()
        queries = F.normalize(features.float(), dim=1)
        nearest: Tensor | None = None
        for chunk in self.bank.split(self.chunk_size):
            chunk = chunk.to(queries.device)
            distances = (2 - 2 * queries @ chunk.T).clamp_min(0).sqrt()
            candidates = distances if nearest is None else torch.cat([nearest, distances], dim=1)
            nearest = candidates.topk(min(self.k, candidates.shape[1]), dim=1, largest=False).values
        return -nearest[:, self.k - 1]
