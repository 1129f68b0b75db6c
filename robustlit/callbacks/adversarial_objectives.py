"""Adversarial training objectives beyond PGD-AT: TRADES and MART."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor

from robustlit.attacks import eval_mode, parse_eps, pgd
from robustlit.callbacks.base import check_attack_settings
from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.losses import kl_divergence, mart_regularizer
from robustlit.module import StepContext


class _AdversarialObjective(LossTermCallback):
    def __init__(self, beta: float, eps: float | str, alpha: float | str | None, steps: int, norm: str,
                 weight: float) -> None:
        super().__init__(weight)
        eps = check_attack_settings(type(self).__name__, eps, steps, norm)
        if beta < 0:
            raise MisconfigurationException(f"{type(self).__name__} needs beta >= 0, got {beta}")
        self.beta = beta
        self.eps = eps
        self.alpha = None if alpha is None else parse_eps(alpha)
        self.steps = steps
        self.norm = norm


class TRADES(_AdversarialObjective):
    """TRADES: ``CE(f(x), y) + β · KL(f(x) ‖ f(x'))`` (loss term; needs RobustModule).

    Reference: Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
    ICML 2019 (β = 6, ε = 8/255, step 2/255, 10 steps). The base loss stays the module's loss on the
    clean batch; this term adds ``β · KL``. ``x'`` maximizes ``KL(p(x) ‖ p(x'))`` with
    :func:`robustlit.attacks.pgd` from a uniform random start in the ball (the paper starts at
    ``x + 0.001·N(0, I)``); as in the paper's code the attack and its target ``p(x)`` use the model
    in eval mode, and the KL that is trained uses both outputs in training mode.

    Args:
        beta: Weight β of the KL term.
        eps: Radius (number or fraction string such as "8/255").
        alpha: Attack step size; defaults to ``2.5 · eps / steps``.
        steps: Attack steps.
        norm: ``"Linf"`` or ``"L2"`` (or ``"L1"``).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[TRADES(beta=6.0, eps="8/255")])  # doctest: +SKIP
    """

    name = "trades"

    def __init__(self, beta: float = 6.0, eps: float | str = 8 / 255, alpha: float | str | None = 2 / 255,
                 steps: int = 10, norm: str = "Linf") -> None:
        super().__init__(beta, eps, alpha, steps, norm, weight=beta)

    def adversarial_examples(self, ctx: StepContext) -> Tensor:
        """Inputs ``x'`` that maximize ``KL(p(x) ‖ p(x'))`` in the ε-ball around ``ctx.inputs``."""
        with torch.no_grad(), eval_mode(ctx.module):
            clean_logits = ctx.module(ctx.inputs)
        return pgd(ctx.module, ctx.inputs, clean_logits.softmax(dim=1), eps=self.eps, alpha=self.alpha,
                   steps=self.steps, norm=self.norm, random_start=True, keep_best=False,
                   loss=lambda logits, target_probs: _kl_to_probs(target_probs, logits))

    def term(self, ctx: StepContext) -> Tensor:
        """``KL(f(x) ‖ f(x'))`` on this step's logits and the adversarial examples."""
        assert ctx.logits is not None
        return kl_divergence(ctx.logits, ctx.module(self.adversarial_examples(ctx)))


def _kl_to_probs(target_probs: Tensor, logits: Tensor) -> Tensor:
    """Per-sample ``KL(target ‖ softmax(logits))`` for target probabilities (the attack's loss)."""
    return (target_probs * (target_probs.clamp_min(1e-12).log() - logits.float().log_softmax(dim=1))).sum(dim=1)


class MART(_AdversarialObjective):
    """MART: boosted CE on PGD examples plus a confidence-weighted KL (transform + loss term; needs RobustModule).

    Reference: Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified Examples",
    ICLR 2020 (β = 6, ε = 8/255, step 2/255, 10 steps). The batch is replaced by PGD-CE examples
    ``x'`` (so the base cross-entropy is computed on them), and the term adds
    ``−log(1 − max_{k≠y} p_k(x')) + β · KL(p(x) ‖ p(x')) · (1 − p_y(x))`` with one extra forward pass
    on the clean batch; the sum is :func:`robustlit.losses.mart_loss`.

    Args:
        beta: Weight β of the KL term.
        eps: Radius (number or fraction string such as "8/255").
        alpha: Attack step size; defaults to ``2.5 · eps / steps``.
        steps: Attack steps.
        norm: ``"Linf"`` or ``"L2"`` (or ``"L1"``).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[MART(beta=6.0, eps="8/255")])  # doctest: +SKIP
    """

    name = "mart"
    order = 20

    def __init__(self, beta: float = 6.0, eps: float | str = 8 / 255, alpha: float | str | None = 2 / 255,
                 steps: int = 10, norm: str = "Linf") -> None:
        super().__init__(beta, eps, alpha, steps, norm, weight=1.0)

    def transform(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """PGD-CE examples for the current targets."""
        adversarial = pgd(ctx.module, ctx.inputs, ctx.targets, eps=self.eps, alpha=self.alpha, steps=self.steps,
                          norm=self.norm, random_start=True, keep_best=False)
        ctx.extras["mart_clean_inputs"] = ctx.inputs
        return adversarial, ctx.targets

    def term(self, ctx: StepContext) -> Tensor:
        """The margin and weighted-KL parts of MART (the base loss already holds the adversarial CE)."""
        assert ctx.logits is not None
        clean_logits = ctx.module(ctx.extras["mart_clean_inputs"])
        return mart_regularizer(ctx.logits, clean_logits, ctx.targets, self.beta)
