"""Single-step (fast) adversarial training: FGSM with a random start (FGSM-RS) and Noise-FGSM."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.attacks import fgsm, parse_eps, pgd
from robustlit.callbacks.base import BatchTransformCallback
from robustlit.module import StepContext

METHODS = ("fgsm_rs", "n_fgsm")


def n_fgsm_examples(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float | None = None,
                    noise: float | None = None) -> Tensor:
    """Noise-FGSM examples: ``x + η + α·sign(∇ℓ(x + η))`` with ``η ~ U(−k, k)``, not projected to the ε-ball.

    Reference: de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step Adversarial Training",
    NeurIPS 2022 (``k = 2ε``, ``α = ε``). Only the image range [0, 1] is enforced (after the noise and
    after the step), so perturbations reach up to ``k + α`` in L∞.

    Args:
        model: Any classifier of [0, 1] images.
        x: Clean inputs.
        y: Labels or soft targets.
        eps: The training radius ε.
        alpha: Step size; defaults to ε.
        noise: Noise magnitude k; defaults to 2ε.

    Returns:
        The examples (detached).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.full((3, 1, 2, 2), 0.5)
        >>> bool(((n_fgsm_examples(net, x, torch.tensor([0, 1, 0]), eps=0.05) - x).abs() <= 0.15 + 1e-6).all())
        True
    """
    alpha = eps if alpha is None else alpha
    noise = 2.0 * eps if noise is None else noise
    noisy = (x + (2.0 * torch.rand_like(x) - 1.0) * noise).clamp(0.0, 1.0)
    return fgsm(model, noisy, y, eps=alpha)


class FastAdversarialTraining(BatchTransformCallback):
    """Single-step adversarial training (batch transform; works on any module).

    ``method="fgsm_rs"``: Wong et al., "Fast is better than free: Revisiting adversarial training",
    ICLR 2020: a uniform random start in the ε-ball, one FGSM step of ``α = 1.25ε``, projection back
    to the ball (PGD with one step). ``method="n_fgsm"``: de Jorge et al. 2022, see
    :func:`n_fgsm_examples` (stronger noise, no projection; avoids catastrophic overfitting at larger ε).
    Examples are generated in eval mode, like :class:`~robustlit.callbacks.AdversarialTraining`.

    Args:
        eps: Training radius (number or fraction string such as "8/255").
        method: ``"fgsm_rs"`` or ``"n_fgsm"``.
        alpha: Step size; defaults to 1.25ε (FGSM-RS) or ε (N-FGSM).
        noise: N-FGSM noise magnitude; defaults to 2ε.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[FastAdversarialTraining(eps="8/255", method="n_fgsm")])  # doctest: +SKIP
    """

    name = "fast_at"
    order = 20

    def __init__(self, eps: float | str = 8 / 255, method: str = "n_fgsm", alpha: float | str | None = None,
                 noise: float | str | None = None) -> None:
        super().__init__()
        self.eps = parse_eps(eps)
        if self.eps <= 0:
            raise MisconfigurationException(f"FastAdversarialTraining needs eps > 0, got {self.eps}")
        if method not in METHODS:
            raise MisconfigurationException(
                f"FastAdversarialTraining method={method!r}; choose one of {', '.join(METHODS)}"
            )
        if noise is not None and method != "n_fgsm":
            raise MisconfigurationException("FastAdversarialTraining noise is an N-FGSM option; set method=n_fgsm")
        self.method = method
        self.alpha = None if alpha is None else parse_eps(alpha)
        self.noise = None if noise is None else parse_eps(noise)

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Single-step adversarial examples for the current targets."""
        if self.method == "n_fgsm":
            return n_fgsm_examples(ctx.module, ctx.inputs, ctx.targets, self.eps, self.alpha, self.noise), ctx.targets
        alpha = 1.25 * self.eps if self.alpha is None else self.alpha
        return pgd(ctx.module, ctx.inputs, ctx.targets, eps=self.eps, alpha=alpha, steps=1, random_start=True,
                   keep_best=False), ctx.targets
