"""MART: misclassification-aware adversarial training (boosted CE plus a KL weighted by clean confidence)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustlit.losses.divergences import kl_divergence
from robustlit.losses.soft_ce import soft_cross_entropy


def mart_regularizer(
    adversarial_logits: Tensor, clean_logits: Tensor, targets: Tensor, beta: float = 6.0
) -> Tensor:
    """The two terms MART adds to the adversarial cross-entropy.

    ``mean_i[−log(1 − max_{k≠y} p_k(x'_i))] + β · mean_i[KL(p(x_i) ‖ p(x'_i)) · (1 − p_y(x_i))]``: the
    margin part of the boosted cross-entropy, and a KL that weighs misclassified clean points more.

    Args:
        adversarial_logits: Logits on the adversarial inputs ``(N, K)``.
        clean_logits: Logits on the clean inputs.
        targets: Labels ``(N,)`` or soft targets (their argmax is used).
        beta: Weight of the KL term (6 in the paper for CIFAR-10).

    Returns:
        The scalar sum of both terms.

    Example:
        >>> import torch
        >>> z, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> float(mart_regularizer(z, z, y, beta=0.0)) > 0
        True
    """
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    adversarial_probs = F.softmax(adversarial_logits.float(), dim=1)
    wrong = adversarial_probs.scatter(1, labels[:, None], 0.0).amax(dim=1)
    margin = -(1.0 - wrong + 1e-12).log().mean()
    clean_true = F.softmax(clean_logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    weighted_kl = (kl_divergence(clean_logits, adversarial_logits, reduction="none") * (1.0 - clean_true)).mean()
    return margin + beta * weighted_kl


def mart_loss(adversarial_logits: Tensor, clean_logits: Tensor, targets: Tensor, beta: float = 6.0) -> Tensor:
    """MART objective: boosted cross-entropy on ``x'`` plus the confidence-weighted KL.

    Reference: Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified Examples",
    ICLR 2020. ``BCE(p(x'), y) = −log p_y(x') − log(1 − max_{k≠y} p_k(x'))``, and the loss is
    ``BCE + β · KL(p(x) ‖ p(x')) · (1 − p_y(x))``, averaged over the batch.

    Example:
        >>> import torch
        >>> z, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> bool(mart_loss(z, z, y) > torch.nn.functional.cross_entropy(z, y))
        True
    """
    return soft_cross_entropy(adversarial_logits, targets) + mart_regularizer(
        adversarial_logits, clean_logits, targets, beta
    )
