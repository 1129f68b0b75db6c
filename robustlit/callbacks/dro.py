"""Distributionally robust training: CVaR and χ² DRO over samples, group DRO over annotated groups."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from robustlit.callbacks.loss_term import LossTermCallback
from robustlit.losses import soft_cross_entropy
from robustlit.losses.dro import chi_square_weights, cvar_weights, group_dro_update, group_mean_losses
from robustlit.module import StepContext

_DRO_TERMS = ("cvar_dro", "chi2_dro", "group_dro")


def refuse_second_dro(callback: LossTermCallback, pl_module: L.LightningModule) -> None:
    """DRO terms replace the mean loss by a worst case; two of them would subtract the mean twice."""
    taken = [name for name in getattr(pl_module, "registered_names", []) if name in _DRO_TERMS]
    if taken:
        raise MisconfigurationException(
            f"{type(callback).__name__} cannot be combined with {taken[0]}: each replaces the mean loss by its own "
            "worst case; keep one DRO regularizer"
        )


def require_groups(callback: L.Callback, ctx: StepContext) -> Tensor:
    """The batch's group ids, or a clear error naming the batch layout the callback needs."""
    if ctx.groups is None:
        raise MisconfigurationException(
            f"{type(callback).__name__} needs group ids in every training batch: yield (x, y, group) or a dict "
            "with a 'group' key, e.g. data=colored_digits (robustlit.data.ColoredDigitsDataModule)"
        )
    return ctx.groups


class _SampleDRO(LossTermCallback):
    """Replace the mean per-sample cross-entropy by ``Σ q_i ℓ_i`` for worst-case batch weights ``q``.

    The term added to the loss is ``Σ q_i ℓ_i − mean(ℓ)``, so with the default cross-entropy base loss the
    total is exactly the robust objective, and ``train/reg/<name>`` logs how far it lies above the mean.
    """

    def __init__(self) -> None:
        super().__init__(weight=1.0)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse a second DRO term, then register."""
        if stage == "fit":
            refuse_second_dro(self, pl_module)
        super().setup(trainer, pl_module, stage)

    def weights(self, losses: Tensor) -> Tensor:
        """Worst-case weights of the batch."""
        raise NotImplementedError

    @override
    def term(self, ctx: StepContext) -> Tensor:
        """Robust minus average per-sample loss."""
        losses = soft_cross_entropy(ctx.logits, ctx.targets, reduction="none")
        return (self.weights(losses) * losses).sum() - losses.mean()


class CVaRDRO(_SampleDRO):
    """CVaR DRO: minimize the mean loss of the worst α-fraction of each batch (loss term; needs RobustModule).

    Reference: Levy et al., "Large-Scale Methods for Distributionally Robust Optimization", NeurIPS 2020;
    the batch weights are :func:`~robustlit.losses.dro.cvar_weights`.

    Args:
        alpha: Fraction α in (0, 1] of the worst samples; 1 gives ERM.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[CVaRDRO(alpha=0.1)])  # doctest: +SKIP
    """

    name = "cvar_dro"

    def __init__(self, alpha: float = 0.1) -> None:
        super().__init__()
        if not 0 < alpha <= 1:
            raise MisconfigurationException(f"CVaRDRO needs 0 < alpha <= 1, got {alpha}")
        self.alpha = alpha

    @override
    def weights(self, losses: Tensor) -> Tensor:
        """:func:`~robustlit.losses.dro.cvar_weights`."""
        return cvar_weights(losses, self.alpha)


class ChiSquareDRO(_SampleDRO):
    """χ² DRO: the worst batch reweighting in a χ² ball of radius ρ (loss term; needs RobustModule).

    Reference: Levy et al., NeurIPS 2020 (constrained χ² formulation); weights from
    :func:`~robustlit.losses.dro.chi_square_weights`.

    Args:
        rho: Radius ρ ≥ 0 of the ball ``½·n·Σ(q_i − 1/n)² ≤ ρ``; 0 gives ERM.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[ChiSquareDRO(rho=1.0)])  # doctest: +SKIP
    """

    name = "chi2_dro"

    def __init__(self, rho: float = 1.0) -> None:
        super().__init__()
        if rho < 0:
            raise MisconfigurationException(f"ChiSquareDRO needs rho >= 0, got {rho}")
        self.rho = rho

    @override
    def weights(self, losses: Tensor) -> Tensor:
        """:func:`~robustlit.losses.dro.chi_square_weights`."""
        return chi_square_weights(losses, self.rho)


class GroupDRO(LossTermCallback):
    """Group DRO: minimize the loss of the worst annotated group (loss term; needs RobustModule and group ids).

    Reference: Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR 2020.
    Each step updates the group weights ``q`` with :func:`~robustlit.losses.dro.group_dro_update` from the
    batch's group losses (summed over all processes under DDP, so ``q`` is the same on every rank) and
    trains on ``Σ_g q_g ℓ_g``; the term added to the loss is ``Σ_g q_g ℓ_g − mean(ℓ)``. ``q`` is kept in
    the callback's state, so a resumed run continues with it; a SAM re-run of the step does not update it.
    With ``eta = 0``, ``q`` stays uniform and the loss is the group-balanced mean (ERM on a balanced batch).

    Args:
        num_groups: Number of groups; read from the datamodule's ``num_groups`` when omitted.
        eta: Step size η of the ``q`` update (0.01 in the paper).
        adjustment: Generalization adjustment ``C``: adds ``C/√n_g`` (training-set group sizes, from the
            datamodule's ``train_group_counts``) to each group's loss in the update.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[GroupDRO(eta=0.01)])  # doctest: +SKIP
    """

    name = "group_dro"

    def __init__(self, num_groups: int | None = None, eta: float = 0.01, adjustment: float = 0.0) -> None:
        super().__init__(weight=1.0)
        if num_groups is not None and num_groups < 1:
            raise MisconfigurationException(f"GroupDRO needs num_groups >= 1, got {num_groups}")
        if eta < 0:
            raise MisconfigurationException(f"GroupDRO needs eta >= 0, got {eta}")
        if adjustment < 0:
            raise MisconfigurationException(f"GroupDRO needs adjustment >= 0, got {adjustment}")
        self.num_groups = num_groups
        self.eta = eta
        self.adjustment = adjustment
        self.q: Tensor | None = None
        self._adjustment: Tensor | None = None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve the number of groups and start from uniform weights."""
        if stage == "fit":
            refuse_second_dro(self, pl_module)
            datamodule = getattr(trainer, "datamodule", None)
            self.num_groups = self.num_groups or getattr(datamodule, "num_groups", None)
            if not self.num_groups:
                raise MisconfigurationException(
                    "GroupDRO needs the number of groups: pass GroupDRO(num_groups=G) or use a datamodule with "
                    "num_groups (a group-annotated one such as data=colored_digits)"
                )
            if self.adjustment > 0:
                counts = getattr(datamodule, "train_group_counts", None)
                if counts is None:
                    raise MisconfigurationException(
                        "GroupDRO adjustment > 0 needs the training group sizes: use a datamodule with "
                        "train_group_counts, or set adjustment=0"
                    )
                self._adjustment = self.adjustment / torch.as_tensor(counts, dtype=torch.float32).clamp_min(1).sqrt()
            if self.q is None:
                self.q = torch.full((self.num_groups,), 1.0 / self.num_groups)
        super().setup(trainer, pl_module, stage)

    @override
    def term(self, ctx: StepContext) -> Tensor:
        """Update ``q`` (not on a replay) and return ``Σ_g q_g ℓ_g − mean(ℓ)``."""
        assert self.q is not None and self.num_groups is not None, "GroupDRO.setup() has not run"
        groups = require_groups(self, ctx)
        losses = soft_cross_entropy(ctx.logits, ctx.targets, reduction="none")
        means, counts = group_mean_losses(losses, groups, self.num_groups)
        if not ctx.replay:
            self.q = group_dro_update(self.q, _global_group_means(means.detach(), counts), self.eta, self._adjustment)
        return (self.q.to(means.device, means.dtype) * means).sum() - losses.mean()

    @override
    def state_dict(self) -> dict[str, Any]:
        """The group weights ``q``."""
        return {"q": None if self.q is None else self.q.detach().cpu().clone()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``q``."""
        if state_dict.get("q") is not None:
            self.q = state_dict["q"].detach().cpu().clone()


def _global_group_means(means: Tensor, counts: Tensor) -> Tensor:
    """Group means over every process's batch (the local means without DDP)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return means.cpu()
    totals = torch.stack([means * counts, counts])
    dist.all_reduce(totals)
    return (totals[0] / totals[1].clamp_min(1)).cpu()
