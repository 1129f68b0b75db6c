"""Divergences between the predictive distributions of two or more forward passes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def kl_divergence(target_logits: Tensor, logits: Tensor, reduction: str = "batchmean") -> Tensor:
    """``KL(softmax(target_logits) ‖ softmax(logits))``, summed over classes.

    Args:
        target_logits: Logits of the reference distribution ``p`` (``(N, K)``).
        logits: Logits of the distribution ``q`` that should match it.
        reduction: ``"batchmean"`` (sum over classes, mean over samples) or ``"none"`` (per sample).

    Returns:
        The divergence; gradients flow into both arguments (detach one to stop them).

    Example:
        >>> z = torch.tensor([[1.0, 2.0]])
        >>> float(kl_divergence(z, z))
        0.0
    """
    log_p = F.log_softmax(target_logits.float(), dim=1)
    log_q = F.log_softmax(logits.float(), dim=1)
    per_sample = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    if reduction == "none":
        return per_sample
    if reduction == "batchmean":
        return per_sample.mean()
    raise ValueError(f"reduction={reduction!r} is not supported; choose batchmean or none")


def js_divergence(*logits: Tensor) -> Tensor:
    """Generalized Jensen–Shannon divergence ``(1/M) Σ_m KL(p_m ‖ M̄)`` of ``M`` predictive distributions.

    Reference: Hendrycks et al., "AugMix", ICLR 2020 (the consistency loss, with M = 3 views);
    the mixture ``M̄`` is clamped at 1e-7 before its log, as in that paper's code.

    Args:
        *logits: Two or more logits tensors ``(N, K)``.

    Returns:
        The divergence averaged over samples.

    Example:
        >>> z = torch.tensor([[1.0, 2.0]])
        >>> float(js_divergence(z, z, z))
        0.0
    """
    if len(logits) < 2:
        raise ValueError(f"js_divergence needs at least two distributions, got {len(logits)}")
    probs = [F.softmax(z.float(), dim=1) for z in logits]
    log_mixture = torch.stack(probs).mean(dim=0).clamp(1e-7, 1.0).log()
    divergences = [(p * (p.clamp_min(1e-12).log() - log_mixture)).sum(dim=1).mean() for p in probs]
    return sum(divergences) / len(probs)


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy ``−Σ_k p_k log p_k`` of ``softmax(logits)``, per sample (nats).

    Example:
        >>> round(float(entropy(torch.zeros(1, 4))[0]), 4)  # log 4
        1.3863
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)
