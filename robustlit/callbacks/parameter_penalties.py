"""Parameter-level regularizers: the L1 penalty and the Parseval (orthogonality) penalty and retraction."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.losses import l1_penalty, orthogonality_penalty, parseval_retraction
from robustlit.module import RobustModule, StepContext

_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


class ParameterPenalty(LossTermCallback):
    """A penalty on parameters only (loss term on RobustModule; a gradient on any other module).

    On a RobustModule the penalty is a loss term, logged as ``train/reg/<name>``. On a plain
    LightningModule its gradient is added to the parameters' gradients just before each optimizer
    step (after AMP unscaling), which trains the same objective. Subclasses implement :meth:`penalty`.

    Example:
        >>> class Sq(ParameterPenalty):
        ...     name = "sq"
        ...     def penalty(self, module):
        ...         return sum(p.pow(2).sum() for p in module.parameters())
        >>> float(Sq().penalty(torch.nn.Linear(1, 1, bias=False).requires_grad_(False).eval())) >= 0
        True
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)
        self._plain: L.LightningModule | None = None

    def penalty(self, module: nn.Module) -> Tensor:
        """The unweighted penalty of ``module``'s parameters."""
        raise NotImplementedError

    def term(self, ctx: StepContext) -> Tensor:
        """:meth:`penalty` of the module being trained."""
        return self.penalty(ctx.module)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Register a loss term on a RobustModule; remember a plain module for the gradient path."""
        if stage != "fit":
            return
        if isinstance(pl_module, RobustModule):
            super().setup(trainer, pl_module, stage)
        else:
            self._plain = pl_module

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        """On a plain module, add ``weight · ∇ penalty`` to the gradients."""
        if self._plain is None or self.weight == 0:
            return
        parameters = [p for p in pl_module.parameters() if p.requires_grad]
        with torch.enable_grad():
            grads = torch.autograd.grad(self.penalty(pl_module), parameters, allow_unused=True)
        for parameter, grad in zip(parameters, grads, strict=True):
            if grad is None:
                continue
            if parameter.grad is None:
                parameter.grad = self.weight * grad
            else:
                parameter.grad.add_(grad, alpha=self.weight)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Unregister."""
        self._plain = None
        super().teardown(trainer, pl_module, stage)


def layer_weights(module: nn.Module) -> list[Tensor]:
    """The weights of every linear and convolution layer of ``module`` (biases and norms excluded).

    Example:
        >>> len(layer_weights(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))))
        1
    """
    return [m.weight for m in module.modules() if isinstance(m, _LAYERS) and m.weight.requires_grad]


class L1Penalty(ParameterPenalty):
    """Add ``λ · Σ |w|`` over linear and convolution weights (parameter penalty; any module).

    Reference: Tibshirani, "Regression Shrinkage and Selection via the Lasso", 1996. Biases and
    normalization parameters are not penalized.

    Args:
        weight: λ.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[L1Penalty(weight=1e-5)])  # doctest: +SKIP
    """

    name = "l1"

    def __init__(self, weight: float = 1e-5) -> None:
        super().__init__(weight)

    def penalty(self, module: nn.Module) -> Tensor:
        """:func:`robustlit.losses.l1_penalty` of the layer weights."""
        return l1_penalty(layer_weights(module))


class Parseval(ParameterPenalty):
    """Keep layer weights near orthogonal (parameter penalty and/or retraction; any module).

    Reference: Cisse et al., "Parseval Networks: Improving Robustness to Adversarial Examples", ICML 2017
    (retraction ``W ← (1 + β)W − β W Wᵀ W`` after every update, β = 0.0003); Bansal et al., NeurIPS 2018
    (the soft-orthogonality penalty ``λ · Σ ‖W Wᵀ − I‖²_F``). Convolution kernels are reshaped to
    ``(out, in·k·k)``; see :func:`robustlit.losses.orthogonality_penalty`.

    Args:
        weight: λ of the penalty (0: retraction only).
        retraction: β of the retraction step after each optimizer step (0: penalty only).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[Parseval(weight=1e-4, retraction=3e-4)])  # doctest: +SKIP
    """

    name = "parseval"

    def __init__(self, weight: float = 1e-4, retraction: float = 3e-4) -> None:
        super().__init__(weight)
        if retraction < 0:
            raise MisconfigurationException(f"Parseval needs retraction >= 0, got {retraction}")
        if weight == 0 and retraction == 0:
            raise MisconfigurationException("Parseval with weight=0 and retraction=0 does nothing; set one of them")
        self.retraction = retraction

    def penalty(self, module: nn.Module) -> Tensor:
        """:func:`robustlit.losses.orthogonality_penalty` of the layer weights."""
        return orthogonality_penalty(layer_weights(module))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Retract every layer weight towards a tight frame."""
        if self.retraction > 0:
            for weight in layer_weights(pl_module):
                parseval_retraction(weight, self.retraction)
