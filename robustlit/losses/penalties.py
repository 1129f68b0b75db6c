"""Penalty terms added to a training loss: on outputs, on input gradients and on parameters."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from robustlit.losses.divergences import entropy
from robustlit.losses.soft_ce import soft_cross_entropy


def confidence_penalty(logits: Tensor, threshold: float = 0.0) -> Tensor:
    """Penalty on low-entropy (over-confident) predictions: ``mean_i max(0, Γ − H(p_i))``.

    Reference: Pereyra et al., "Regularizing Neural Networks by Penalizing Confident Output Distributions",
    ICLR 2017 workshop. With ``Γ = 0`` the term is ``−H(p)``, the paper's plain penalty (add it with
    weight β); a threshold Γ > 0 penalizes only outputs whose entropy falls below Γ.

    Args:
        logits: Logits ``(N, K)``.
        threshold: Entropy threshold Γ in nats (0: plain penalty).

    Returns:
        The scalar penalty.

    Example:
        >>> round(float(confidence_penalty(torch.zeros(2, 4))), 4)  # uniform output: -log 4
        -1.3863
    """
    if threshold == 0.0:
        return -entropy(logits).mean()
    return (threshold - entropy(logits)).clamp_min(0.0).mean()


def l1_penalty(parameters: Iterable[Tensor]) -> Tensor:
    """Sum of absolute values of ``parameters`` (the lasso penalty).

    Example:
        >>> float(l1_penalty([torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])]))
        6.0
    """
    return sum((p.abs().sum() for p in parameters), torch.tensor(0.0))


def orthogonality_penalty(weights: Iterable[Tensor]) -> Tensor:
    """``Σ_W ‖G(W) − I‖²_F`` with ``G`` the smaller Gram matrix of each weight reshaped to ``(out, fan_in)``.

    Reference: Cisse et al., "Parseval Networks", ICML 2017 (``W Wᵀ ≈ I``, rows form a tight frame);
    Bansal et al., "Can We Gain More from Orthogonality Regularizations?", NeurIPS 2018 (soft orthogonality).
    For a wide weight (out ≤ fan_in) ``G = W Wᵀ``, otherwise ``Wᵀ W``, so the target is reachable.

    Example:
        >>> float(orthogonality_penalty([torch.eye(3), 2 * torch.eye(2)]))  # (4 - 1)^2 * 2
        18.0
    """
    total = torch.tensor(0.0)
    for weight in weights:
        matrix = weight.reshape(weight.shape[0], -1)
        gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
        total = total + (gram - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)).pow(2).sum()
    return total


@torch.no_grad()
def parseval_retraction(weight: Tensor, beta: float) -> None:
    """One Parseval retraction step in place: ``W ← (1 + β) W − β W Wᵀ W`` (on ``W`` reshaped to 2-D).

    Reference: Cisse et al., "Parseval Networks", ICML 2017 (β = 0.0003, after every update); it is a
    gradient step on ``(β/4)‖W Wᵀ − I‖²_F`` that keeps the rows close to a tight frame.

    Example:
        >>> w = torch.eye(2)
        >>> parseval_retraction(w, 0.1)
        >>> w.tolist()  # an orthonormal matrix is a fixed point
        [[1.0, 0.0], [0.0, 1.0]]
    """
    matrix = weight.reshape(weight.shape[0], -1)
    if matrix.shape[0] > matrix.shape[1]:  # a tall matrix cannot have orthonormal rows; retract its columns
        updated = (1.0 + beta) * matrix - beta * matrix @ (matrix.T @ matrix)
    else:
        updated = (1.0 + beta) * matrix - beta * (matrix @ matrix.T) @ matrix
    weight.copy_(updated.reshape(weight.shape))


def input_gradient_penalty(logits: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
    """``mean_i ‖∇_{x_i} ℓ(f(x_i), y_i)‖²₂``: the squared input gradient of the per-sample cross-entropy.

    Reference: Drucker & LeCun, "Improving Generalization Performance Using Double Backpropagation", 1992;
    Ross & Doshi-Velez, "Improving the Adversarial Robustness and Interpretability of Deep Neural Networks
    by Regularizing their Input Gradients", AAAI 2018. The graph is kept (double backpropagation).

    Args:
        logits: Logits computed from ``inputs`` ``(N, K)``.
        inputs: Inputs with ``requires_grad=True`` that produced ``logits``.
        targets: Labels or soft targets.

    Returns:
        The scalar penalty, differentiable with respect to the parameters.

    Example:
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> x = torch.zeros(1, 2, requires_grad=True)
        >>> round(float(input_gradient_penalty(x @ w.T, x, torch.tensor([0])).detach()), 4)  # (1 - 1/2)^2
        0.25
    """
    _check_differentiable(inputs)
    losses = soft_cross_entropy(logits, targets, reduction="sum")
    (grad,) = torch.autograd.grad(losses, inputs, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def jacobian_penalty(logits: Tensor, inputs: Tensor, num_projections: int = 1,
                     generator: torch.Generator | None = None) -> Tensor:
    """Random-projection estimate of ``mean_i ‖J(x_i)‖²_F``, ``J`` the Jacobian of the logits in the input.

    Reference: Hoffman, Roberts & Yaida, "Robust Learning with Jacobian Regularization", 2019. For ``v``
    uniform on the unit sphere of ``R^K``, ``E[K · ‖vᵀ J‖²] = ‖J‖²_F``, so ``num_projections``
    vector-Jacobian products give an unbiased estimate (the paper uses one). Multiply by ``λ_JR / 2``
    for the paper's loss.

    Args:
        logits: Logits computed from ``inputs`` ``(N, K)``.
        inputs: Inputs with ``requires_grad=True`` that produced ``logits``.
        num_projections: Number of random projections ``n_proj``.
        generator: Optional generator for the projections.

    Returns:
        The scalar estimate, differentiable with respect to the parameters.

    Example:
        >>> x = torch.zeros(3, 2, requires_grad=True)
        >>> w = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # ‖J‖²_F = 25 for every sample
        >>> estimate = jacobian_penalty(x @ w.T, x, num_projections=2000, generator=torch.Generator().manual_seed(0))
        >>> abs(float(estimate) - 25.0) < 1.5
        True
    """
    _check_differentiable(inputs)
    if num_projections < 1:
        raise ValueError(f"jacobian_penalty needs num_projections >= 1, got {num_projections}")
    classes = logits.shape[1]
    total = logits.new_zeros(())
    for _ in range(num_projections):
        v = torch.randn(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
        v = v / v.norm(dim=1, keepdim=True)
        # retain_graph: the training loss is backpropagated through the same graph afterwards
        (vjp,) = torch.autograd.grad(logits, inputs, grad_outputs=v, create_graph=True, retain_graph=True)
        total = total + classes * vjp.flatten(1).pow(2).sum(dim=1).mean()
    return total / num_projections


def _check_differentiable(inputs: Tensor) -> None:
    if not inputs.requires_grad:
        raise ValueError("the inputs must have requires_grad=True and be the tensor the logits were computed from")
