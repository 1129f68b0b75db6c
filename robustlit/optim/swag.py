"""The SWAG posterior over weights: running moments plus a low-rank deviation matrix (pure PyTorch)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class SWAGPosterior:
    """Gaussian posterior of SWAG over a flat parameter vector: diagonal plus low rank.

    Reference: Maddox et al., "A Simple Baseline for Bayesian Uncertainty in Deep Learning", NeurIPS 2019.
    Each :meth:`collect` updates the running first and second moments ``θ̄``, ``θ̄²`` and appends the
    deviation ``θ_i − θ̄_i`` (from the updated mean) to ``D``, keeping the last ``max_rank`` columns.
    :meth:`sample` draws ``θ̄ + √scale·(Σ_diag^{1/2} z₁ + D z₂/√(K−1))`` with
    ``Σ_diag = θ̄² − θ̄²`` (clamped at ``var_clamp``); ``scale = 0.5`` is the paper's
    ``1/2 (Σ_diag + D Dᵀ/(K−1))`` covariance. ``diagonal=True`` drops the low-rank part (SWAG-Diagonal).

    Args:
        num_parameters: Length of the flat parameter vector.
        max_rank: ``K``, the number of deviation columns kept.
        var_clamp: Lower bound of the diagonal variance.

    Example:
        >>> posterior = SWAGPosterior(2, max_rank=2)
        >>> for theta in ([1.0, 0.0], [3.0, 2.0]):
        ...     posterior.collect(torch.tensor(theta))
        >>> posterior.mean.tolist(), posterior.variance.tolist()
        ([2.0, 1.0], [1.0, 1.0])
    """

    def __init__(self, num_parameters: int, max_rank: int = 20, var_clamp: float = 1e-30) -> None:
        if num_parameters < 1:
            raise ValueError(f"SWAGPosterior needs num_parameters >= 1, got {num_parameters}")
        if max_rank < 0:
            raise ValueError(f"SWAGPosterior needs max_rank >= 0, got {max_rank}")
        self.max_rank = max_rank
        self.var_clamp = var_clamp
        self.n = 0
        self.mean = torch.zeros(num_parameters)
        self.sq_mean = torch.zeros(num_parameters)
        self.deviations = torch.zeros(0, num_parameters)

    def collect(self, theta: Tensor) -> None:
        """Add one set of weights ``θ_i`` (flat, any device; kept in float32 on the CPU)."""
        theta = theta.detach().to("cpu", torch.float32).flatten()
        if theta.shape != self.mean.shape:
            raise ValueError(f"SWAG collected {theta.numel()} weights, expected {self.mean.numel()}")
        self.n += 1
        self.mean += (theta - self.mean) / self.n
        self.sq_mean += (theta * theta - self.sq_mean) / self.n
        if self.max_rank:
            self.deviations = torch.cat([self.deviations, (theta - self.mean)[None]])[-self.max_rank :]

    @property
    def variance(self) -> Tensor:
        """Diagonal variance ``θ̄² − θ̄²``, clamped at ``var_clamp``."""
        return (self.sq_mean - self.mean * self.mean).clamp_min(self.var_clamp)

    def sample(self, generator: torch.Generator, scale: float = 0.5, diagonal: bool = False) -> Tensor:
        """Draw one flat weight vector (see the class docstring).

        Raises:
            RuntimeError: If nothing was collected.
        """
        if self.n == 0:
            raise RuntimeError("SWAG has collected no weights yet; sample after training has reached its start")
        draw = self.variance.sqrt() * torch.randn(self.mean.shape, generator=generator)
        rank = self.deviations.shape[0]
        if not diagonal and rank >= 2:
            draw += self.deviations.T @ torch.randn(rank, generator=generator) / (rank - 1) ** 0.5
        return self.mean + scale**0.5 * draw

    def state_dict(self) -> dict[str, Any]:
        """Moments and deviations, for checkpoints."""
        return {"n": self.n, "mean": self.mean, "sq_mean": self.sq_mean, "deviations": self.deviations,
                "max_rank": self.max_rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state["mean"].shape != self.mean.shape:
            raise ValueError(f"SWAG state has {state['mean'].numel()} weights, this model {self.mean.numel()}")
        self.n, self.max_rank = int(state["n"]), int(state["max_rank"])
        self.mean, self.sq_mean = state["mean"].clone(), state["sq_mean"].clone()
        self.deviations = state["deviations"].clone()
