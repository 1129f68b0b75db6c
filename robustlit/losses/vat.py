"""Virtual adversarial training: smoothness of the output distribution in its most sensitive direction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlit.losses.divergences import kl_divergence


def vat_loss(
    model: nn.Module,
    inputs: Tensor,
    logits: Tensor,
    eps: float = 1.0,
    xi: float = 1e-6,
    power_iterations: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Local distributional smoothness ``KL(p(x) ‖ p(x + r_vadv))`` with ``‖r_vadv‖₂ = ε``.

    Reference: Miyato et al., "Virtual Adversarial Training: A Regularization Method for Supervised and
    Semi-Supervised Learning", TPAMI 2018. ``r_vadv`` is found by ``power_iterations`` rounds of power
    iteration: ``d ← normalize(∇_r KL(p(x) ‖ p(x + ξ d)))`` from a random unit ``d``; then ``r = ε d``.
    Labels are not used, so unlabeled batches work too. ``p(x)`` is treated as a constant. The model
    runs in whatever mode it is in (the paper evaluates the perturbed passes in training mode).

    Args:
        model: The classifier.
        inputs: The inputs ``(N, ...)``.
        logits: ``model(inputs)`` (reused, not recomputed).
        eps: L2 radius of the virtual adversarial perturbation, in input units.
        xi: Finite-difference scale of the power iteration.
        power_iterations: Rounds of power iteration (1 in the paper).
        generator: Optional generator for the random start direction.

    Returns:
        The scalar LDS loss, differentiable with respect to the parameters.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.rand(5, 1, 2, 2)
        >>> float(vat_loss(net, x, net(x), eps=0.5)) >= 0
        True
    """
    if eps <= 0 or xi <= 0 or power_iterations < 1:
        raise ValueError(f"vat_loss needs eps > 0, xi > 0 and power_iterations >= 1; got {eps}, {xi}, "
                         f"{power_iterations}")
    target = logits.detach()
    inputs = inputs.detach()
    direction = _unit(torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device))
    with torch.enable_grad():
        for _ in range(power_iterations):
            direction.requires_grad_(True)
            divergence = kl_divergence(target, model(inputs + xi * direction))
            (grad,) = torch.autograd.grad(divergence, direction)
            direction = _unit(grad.detach())
    return kl_divergence(target, model(inputs + eps * direction))


def _unit(tensor: Tensor) -> Tensor:
    norms = tensor.flatten(1).norm(dim=1).clamp_min(1e-12)
    return tensor / norms.view(-1, *([1] * (tensor.dim() - 1)))
