"""Difference-of-logits-ratio (DLR) losses, untargeted and targeted.

Reference: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020.

DLR is invariant to shifting and rescaling the logits, so, unlike cross-entropy, it cannot be
flattened by a model that simply inflates its logits.
"""

from __future__ import annotations

from torch import Tensor

_DENOMINATOR_FLOOR = 1e-12


def dlr_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample DLR loss ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3 + 1e-12)``.

    ``π`` sorts the logits in decreasing order. The loss is positive exactly when the sample is
    misclassified, and maximizing it is the APGD-DLR objective.

    Args:
        logits: Logits ``(N, K)`` with ``K >= 3``.
        targets: True labels ``(N,)`` or soft targets ``(N, K)`` (their argmax is used).

    Returns:
        The loss of each sample, shape ``(N,)``.

    Raises:
        ValueError: With fewer than 3 classes, where the denominator is not defined.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 2.0, 1.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
        >>> [round(value, 4) for value in dlr_loss(logits, torch.tensor([0, 0])).tolist()]
        [-0.6667, 0.6667]
    """
    _check_classes(logits, 3, "dlr_loss")
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    ranked = logits.sort(dim=1, descending=True).values
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    best_other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return -(true_logit - best_other) / (ranked[:, 0] - ranked[:, 2] + _DENOMINATOR_FLOOR)


def targeted_dlr_loss(logits: Tensor, targets: Tensor, target_class: Tensor) -> Tensor:
    """Per-sample targeted DLR loss ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)``.

    Maximizing it pushes the logit of ``target_class`` above the true one (APGD-T).

    Args:
        logits: Logits ``(N, K)`` with ``K >= 4``.
        targets: True labels ``(N,)`` or soft targets ``(N, K)`` (their argmax is used).
        target_class: The class ``t`` to reach for each sample, shape ``(N,)``.

    Returns:
        The loss of each sample, shape ``(N,)``.

    Raises:
        ValueError: With fewer than 4 classes.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 2.0, 1.0, 0.0]])
        >>> round(targeted_dlr_loss(logits, torch.tensor([0]), torch.tensor([1])).item(), 4)
        -0.5714
    """
    _check_classes(logits, 4, "targeted_dlr_loss")
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    ranked = logits.sort(dim=1, descending=True).values
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    target_logit = logits.gather(1, target_class[:, None]).squeeze(1)
    scale = ranked[:, 0] - 0.5 * (ranked[:, 2] + ranked[:, 3]) + _DENOMINATOR_FLOOR
    return -(true_logit - target_logit) / scale


def _check_classes(logits: Tensor, minimum: int, name: str) -> None:
    if logits.ndim != 2 or logits.shape[1] < minimum:
        raise ValueError(
            f"{name} needs logits of shape (N, K) with K >= {minimum} classes, got {tuple(logits.shape)}; "
            "use loss='ce' for models with fewer classes"
        )

