"""Input-gradient regularizers: double backpropagation and the random-projection Jacobian penalty."""

from __future__ import annotations

from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.losses import input_gradient_penalty, jacobian_penalty
from robustlit.module import StepContext


class _InputGradientTerm(LossTermCallback):
    """Makes the step's final inputs differentiable, so the term reuses the one forward pass."""

    order = 100  # after every other transform: penalize the gradient at the inputs the model trains on

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Return the inputs as a leaf that requires grad."""
        if ctx.inputs.requires_grad:
            return ctx.inputs, ctx.targets
        return ctx.inputs.detach().requires_grad_(True), ctx.targets


class InputGradientPenalty(_InputGradientTerm):
    """Add ``λ · mean_i ‖∇_x CE(f(x_i), y_i)‖²`` to the loss (loss term; needs RobustModule).

    Reference: Ross & Doshi-Velez, "Improving the Adversarial Robustness and Interpretability of Deep
    Neural Networks by Regularizing their Input Gradients", AAAI 2018 (double backpropagation of
    Drucker & LeCun 1992). Costs about one extra backward pass.

    Args:
        weight: λ.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[InputGradientPenalty(weight=1.0)])  # doctest: +SKIP
    """

    name = "input_gradient"

    def term(self, ctx: StepContext) -> Tensor:
        """:func:`robustlit.losses.input_gradient_penalty` at this step's inputs."""
        assert ctx.logits is not None
        return input_gradient_penalty(ctx.logits, ctx.inputs, ctx.targets)


class JacobianPenalty(_InputGradientTerm):
    """Add ``(λ_JR / 2) · mean_i ‖J(x_i)‖²_F``, estimated with random projections (loss term; needs RobustModule).

    Reference: Hoffman, Roberts & Yaida, "Robust Learning with Jacobian Regularization", 2019
    (λ_JR = 0.01, one projection).

    Args:
        weight: λ_JR.
        num_projections: Random projections per step.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[JacobianPenalty(weight=0.01)])  # doctest: +SKIP
    """

    name = "jacobian"

    def __init__(self, weight: float = 0.01, num_projections: int = 1) -> None:
        super().__init__(weight)
        if num_projections < 1:
            raise MisconfigurationException(f"JacobianPenalty needs num_projections >= 1, got {num_projections}")
        self.num_projections = num_projections

    def term(self, ctx: StepContext) -> Tensor:
        """Half of :func:`robustlit.losses.jacobian_penalty` at this step's inputs."""
        assert ctx.logits is not None
        return 0.5 * jacobian_penalty(ctx.logits, ctx.inputs, self.num_projections)

