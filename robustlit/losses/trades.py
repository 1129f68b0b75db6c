"""TRADES: trade natural accuracy for robustness with a KL term between clean and adversarial outputs."""

from __future__ import annotations

from torch import Tensor

from robustlit.losses.divergences import kl_divergence
from robustlit.losses.soft_ce import soft_cross_entropy


def trades_loss(clean_logits: Tensor, adversarial_logits: Tensor, targets: Tensor, beta: float = 6.0) -> Tensor:
    """``CE(f(x), y) + β · KL(f(x) ‖ f(x'))``, with the KL summed over classes and averaged over samples.

    Reference: Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019
    (β = 6 for CIFAR-10 at ε = 8/255, 1 for a milder trade-off). ``x'`` maximizes the KL term inside the
    ε-ball; see :class:`robustlit.callbacks.TRADES`, which finds it with :func:`robustlit.attacks.pgd`.

    Args:
        clean_logits: Logits on the clean inputs ``(N, K)``.
        adversarial_logits: Logits on the adversarial inputs.
        targets: Labels ``(N,)`` or soft targets ``(N, K)``.
        beta: Weight of the robustness (KL) term.

    Returns:
        The scalar loss.

    Example:
        >>> import torch
        >>> z, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> torch.allclose(trades_loss(z, z, y), torch.nn.functional.cross_entropy(z, y))
        True
    """
    return soft_cross_entropy(clean_logits, targets) + beta * kl_divergence(clean_logits, adversarial_logits)
