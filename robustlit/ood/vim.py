"""Virtual-logit matching: the feature's residual off the principal ID subspace (Wang et al., CVPR 2022)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlit.errors import ConfigError, DataError
from robustlit.ood.base import OODDetector
from robustlit.ood.streaming import FixedBlocks, Reservoir


def linear_head(detector: OODDetector) -> nn.Linear:
    """The final linear layer whose input the detector's features are; refuses a named layer."""
    extractor = detector.extractor
    if extractor is None or not extractor.is_penultimate or extractor.head is None:
        raise ConfigError(
            f"{detector.name} works on the input of the final linear layer; leave its layer unset (null)"
        )
    return extractor.head


class ViM(OODDetector):
    """``logsumexp(z) − α·‖x^{P⊥}‖``: the energy minus a virtual logit from the feature's residual.

    With the head ``z = Wx + b``, features are shifted to the origin ``u = −W⁺b``. The principal subspace
    ``P`` is spanned by the ``dim`` leading eigenvectors of the uncentered second moment of ``x − u`` over
    the ID data, built from running float64 sums in fixed blocks (memory ``O(D²)``, identical for one pass
    or chunks). ``α`` matches the virtual logit to the mean maximum logit; the paper takes both means
    over the whole training set, here over a seeded subsample of at most ``max_samples`` (memory bound).
    The score is the log-odds form of the paper's virtual-class probability, so it ranks inputs the same.

    Args:
        model: The classifier; its final layer must be an ``nn.Linear``.
        dim: Dimension of the principal subspace (None: half the feature dimension; the paper uses 1000
            of 2048 for ResNet-50, OpenOOD 256 of 512 for ResNet-18).
        max_samples: Subsample size for ``α``.
        seed: Seed of the subsample.
        block_size: Rows summed at a time.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
        >>> detector = ViM(net, dim=2).fit([(torch.rand(40, 3, 2, 2), torch.zeros(40, dtype=torch.long))])
        >>> detector.score(torch.rand(5, 3, 2, 2)).shape
        torch.Size([5])
    """

    name = "vim"
    requires_fit = True
    uses_features = True

    def __init__(
        self,
        model: nn.Module,
        dim: int | None = None,
        max_samples: int = 20000,
        seed: int = 0,
        block_size: int = 256,
        layer: str | None = None,
    ) -> None:
        super().__init__(model, layer)
        self.head = linear_head(self)
        if dim is not None and not 0 < dim < self.head.in_features:
            raise ConfigError(f"vim dim={dim} must be in [1, {self.head.in_features - 1}] (the feature size - 1)")
        self.dim = dim
        self.max_samples = max_samples
        self.seed = seed
        self.block_size = block_size
        weight, bias = self.head.weight.detach().double(), self.head.bias
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
        self.origin = -torch.linalg.pinv(weight) @ bias.to(weight.device)

    def start_fit(self) -> None:
        """Zero the second moment and the subsample."""
        size = self.head.in_features
        self._moment = torch.zeros(size, size, dtype=torch.float64, device=self.origin.device)
        self._count = 0
        self._blocks = FixedBlocks(self.block_size, self._consume)
        self._reservoir = Reservoir(self.max_samples, self.seed)
        self.fitted = False

    def _consume(self, features: Tensor) -> None:
        centered = features.double().to(self.origin.device) - self.origin
        self._moment += centered.T @ centered
        self._count += features.shape[0]

    def partial_fit(self, features: Tensor | None, logits: Tensor, labels: Tensor) -> None:
        """Add a batch to the second moment and offer it (features and max logits) to the subsample."""
        self._blocks.add(features.detach())
        self._reservoir.add(torch.cat([features.detach().float(), logits.detach().float().amax(1, keepdim=True)], 1))

    def finish_fit(self) -> None:
        """The residual subspace and ``α``."""
        self._blocks.flush()
        if self._count < 2:
            raise DataError("vim needs at least two ID samples to fit")
        dim = self.dim if self.dim is not None else self.head.in_features // 2
        _, eigenvectors = torch.linalg.eigh(self._moment / self._count)  # ascending eigenvalues
        self.residual_basis = eigenvectors[:, : self.head.in_features - dim]
        sample = self._reservoir.rows
        residual = self._residual_norm(sample[:, :-1])
        self.alpha = float(sample[:, -1].double().mean() / residual.mean().clamp_min(1e-12))
        self.fitted = True

    def _residual_norm(self, features: Tensor) -> Tensor:
        centered = features.double().to(self.origin.device) - self.origin
        return (centered @ self.residual_basis).norm(dim=1)

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """``logsumexp(z) − α·‖residual‖``."""
        self._check_fitted()
        virtual = self.alpha * self._residual_norm(features)
        return (torch.logsumexp(logits.double(), dim=1) - virtual.to(logits.device)).float()
