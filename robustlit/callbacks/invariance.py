"""Invariance across environments: IRMv1 and V-REx, with the batch's group ids as environments."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from robustlit.callbacks.dro import require_groups
from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.losses import soft_cross_entropy
from robustlit.losses.dro import environment_risks, irm_penalty, vrex_penalty
from robustlit.module import StepContext


class _Invariance(LossTermCallback):
    """Shared option checks and penalty annealing: λ = 1 for the first ``anneal_steps`` optimizer steps."""

    def __init__(self, penalty_weight: float, anneal_steps: int) -> None:
        super().__init__(weight=1.0)
        if penalty_weight < 0:
            raise MisconfigurationException(f"{type(self).__name__} needs penalty_weight >= 0, got {penalty_weight}")
        if anneal_steps < 0:
            raise MisconfigurationException(f"{type(self).__name__} needs anneal_steps >= 0, got {anneal_steps}")
        self.penalty_weight = penalty_weight
        self.anneal_steps = anneal_steps
        self._step = 0

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Track the optimizer step for the annealing."""
        self._step = trainer.global_step

    @property
    def current_weight(self) -> float:
        """λ of the current step."""
        return 1.0 if self._step < self.anneal_steps else self.penalty_weight


class IRM(_Invariance):
    """IRMv1 penalty: λ times the mean squared gradient of each environment's risk w.r.t. a dummy scale (loss term).

    Reference: Arjovsky et al., "Invariant Risk Minimization", 2019 (:func:`~robustlit.losses.dro.irm_penalty`).
    Environments are the batch's group ids (needs RobustModule and group-annotated batches). The risks come
    from the base loss (or from a DRO term), so the term is only ``λ·mean_e penalty_e`` and composes with
    other objectives. Unlike the reference code, the loss is not divided by λ once λ > 1 (that would rescale
    the other terms too); lower the learning rate instead. With label-pure groups, such as (label, colour), a
    large λ favours constant predictions; there keep λ near 1.

    Args:
        penalty_weight: λ after the annealing (the reference uses 1e4 on Colored MNIST, with the division).
        anneal_steps: Optimizer steps trained with λ = 1 first (the reference uses 100).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[IRM(penalty_weight=100.0, anneal_steps=50)])  # doctest: +SKIP
    """

    name = "irm"

    def __init__(self, penalty_weight: float = 100.0, anneal_steps: int = 100) -> None:
        super().__init__(penalty_weight, anneal_steps)

    @override
    def term(self, ctx: StepContext) -> Tensor:
        """λ times the mean IRMv1 penalty over the environments in the batch."""
        environments = require_groups(self, ctx)
        penalties = [irm_penalty(ctx.logits[environments == e], ctx.targets[environments == e])
                     for e in torch.unique(environments)]
        return self.current_weight * torch.stack(penalties).mean()


class VREx(_Invariance):
    """V-REx penalty: λ times the variance of the environments' risks (loss term; needs group-annotated batches).

    Reference: Krueger et al., "Out-of-Distribution Generalization via Risk Extrapolation (REx)", ICML 2021
    (:func:`~robustlit.losses.dro.vrex_penalty`, population variance). Environments are the batch's group ids;
    the mean risk comes from the base loss (or a DRO term), so the term is ``λ·Var_e(R_e)`` and composes with
    other objectives (the reference's division by λ is left out, as for :class:`IRM`).

    Args:
        penalty_weight: λ after the annealing.
        anneal_steps: Optimizer steps trained with λ = 1 first.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[VREx(penalty_weight=10.0)])  # doctest: +SKIP
    """

    name = "vrex"

    def __init__(self, penalty_weight: float = 10.0, anneal_steps: int = 100) -> None:
        super().__init__(penalty_weight, anneal_steps)

    @override
    def term(self, ctx: StepContext) -> Tensor:
        """λ times the population variance of the environment risks."""
        losses = soft_cross_entropy(ctx.logits, ctx.targets, reduction="none")
        risks, _ = environment_risks(losses, require_groups(self, ctx))
        return self.current_weight * vrex_penalty(risks)
