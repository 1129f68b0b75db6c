"""Detectors that read only the logits: MSP, MaxLogit, Energy, and ODIN (which also perturbs the input)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlit.attacks import eval_mode
from robustlit.errors import ConfigError
from robustlit.ood.base import OODDetector


class MSP(OODDetector):
    """Maximum softmax probability. Reference: Hendrycks & Gimpel, ICLR 2017.

    Example:
        >>> MSP(nn.Identity()).score_outputs(None, torch.tensor([[0.0, 0.0], [9.0, 0.0]])).tolist()[0]
        0.5
    """

    name = "msp"

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """``max_k softmax(z)_k``."""
        return logits.softmax(dim=1).amax(dim=1)


class MaxLogit(OODDetector):
    """Maximum logit. Reference: Hendrycks et al., "Scaling OOD detection", ICML 2022.

    Example:
        >>> MaxLogit(nn.Identity()).score_outputs(None, torch.tensor([[1.0, 3.0]])).tolist()
        [3.0]
    """

    name = "maxlogit"

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """``max_k z_k``."""
        return logits.amax(dim=1)


class Energy(OODDetector):
    """Negative free energy ``T·logsumexp(z/T)``. Reference: Liu et al., NeurIPS 2020.

    Args:
        model: The classifier.
        temperature: ``T`` (1 in the paper's evaluation).

    Example:
        >>> round(Energy(nn.Identity()).score_outputs(None, torch.zeros(1, 4)).item(), 4)
        1.3863
    """

    name = "energy"

    def __init__(self, model: nn.Module, temperature: float = 1.0, layer: str | None = None) -> None:
        super().__init__(model, layer)
        if temperature <= 0:
            raise ConfigError(f"energy temperature must be positive, got {temperature}")
        self.temperature = temperature

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """``T·logsumexp(z/T)`` (the negated energy)."""
        return self.temperature * torch.logsumexp(logits / self.temperature, dim=1)


class ODIN(OODDetector):
    """Temperature-scaled MSP after a small input step that raises it. Reference: Liang et al., ICLR 2018.

    The input moves by ``epsilon`` in pixel units ([0, 1] images; the paper's step on normalized inputs
    divides the gradient by the std, which is the same step in pixels) against the gradient of the
    cross-entropy towards the predicted class at temperature ``T``; no clamping to [0, 1], as in the paper.

    Args:
        model: The classifier.
        temperature: ``T`` (1000 in the paper).
        epsilon: Input step size (the paper tunes it in [0, 0.004]; 0.0014 for CIFAR-10 DenseNet).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> ODIN(net).score(torch.rand(2, 3, 2, 2)).shape
        torch.Size([2])
    """

    name = "odin"
    needs_input_gradients = True

    def __init__(
        self, model: nn.Module, temperature: float = 1000.0, epsilon: float = 0.0014, layer: str | None = None
    ) -> None:
        super().__init__(model, layer)
        if temperature <= 0 or epsilon < 0:
            raise ConfigError(f"odin needs temperature > 0 and epsilon >= 0, got {temperature} and {epsilon}")
        self.temperature = temperature
        self.epsilon = epsilon

    def score(self, x: Tensor) -> Tensor:
        """Max softmax at temperature ``T`` of the perturbed input."""
        with eval_mode(self.model), torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            logits = self.model(x).float() / self.temperature
            loss = F.cross_entropy(logits, logits.argmax(dim=1), reduction="sum")
            (gradient,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                shifted = x - self.epsilon * gradient.sign()
                return (self.model(shifted).float() / self.temperature).softmax(dim=1).amax(dim=1)

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """ODIN needs the input itself; use :meth:`score`."""
        raise TypeError("ODIN perturbs the input: call score(x), not score_outputs()")
