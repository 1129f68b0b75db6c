"""Robust accuracy under white-box attacks, over a list of ε."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.attacks import ATTACKS, NORMS, parse_eps
from robustlit.reporting.schema import Metric
from robustlit.suites.base import EvaluationSuite


class AdversarialSuite(EvaluationSuite):
    """Robust accuracy of each attack at each ε (evaluation suite; works on any LightningModule).

    Per attack, a point counts as robust at ε only if it is also robust at every smaller ε of
    the list (an adversarial example at a smaller ε is valid at a larger one), so the reported
    curve is the point-wise worst case and never increases with ε. With several attacks, the
    suite also reports their point-wise worst case as ``attack="worst_case"``.

    Args:
        attacks: Attack names from :data:`robustlit.attacks.ATTACKS`.
        norm: ``"Linf"`` or ``"L2"``.
        eps: Radii in input units; numbers or strings like ``"8/255"``.
        steps: Iterations of iterative attacks.
        rel_step_size: Step size as a fraction of ε (0.25 gives 2/255 at 8/255).
        restarts: Random restarts of iterative attacks.
        seed: Seed of the per-sample random starts.
        limit: Only attack the first ``limit`` test samples.
        stages: Loops to run in.

    Example:
        >>> suite = AdversarialSuite(attacks=["pgd"], eps=["2/255", "8/255"], steps=20)
        >>> [round(e * 255) for e in suite.eps]
        [2, 8]
    """

    suite = "adversarial"

    def __init__(
        self,
        attacks: Sequence[str] = ("pgd",),
        norm: str = "Linf",
        eps: Sequence[float | str] = ("8/255",),
        steps: int = 10,
        rel_step_size: float = 0.25,
        restarts: int = 1,
        seed: int = 0,
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        unknown = [name for name in attacks if name not in ATTACKS]
        if unknown or not attacks:
            raise MisconfigurationException(
                f"unknown attacks {unknown or '[]'}; choose from {', '.join(ATTACKS)}"
            )
        if norm not in NORMS:
            raise MisconfigurationException(f"AdversarialSuite norm={norm!r}; choose one of {', '.join(NORMS)}")
        self.eps = sorted(parse_eps(value) for value in eps)
        if not self.eps or self.eps[0] < 0:
            raise MisconfigurationException(f"AdversarialSuite needs a non-empty list of eps >= 0, got {list(eps)}")
        if steps < 1 or restarts < 1 or rel_step_size <= 0:
            raise MisconfigurationException("AdversarialSuite needs steps >= 1, restarts >= 1 and rel_step_size > 0")
        self.attacks = list(attacks)
        self.norm = norm
        self.steps = steps
        self.rel_step_size = rel_step_size
        self.restarts = restarts
        self.seed = seed

    def reset(self) -> None:
        """Zero the robust counts."""
        self._robust = {(attack, eps): 0 for attack in [*self.attacks, "worst_case"] for eps in self.eps}
        self._total = 0

    def _attack(self, name: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, ids: Tensor) -> Tensor:
        if name == "fgsm":
            return ATTACKS[name](model, x, y, eps=eps, norm=self.norm)
        return ATTACKS[name](
            model, x, y, eps=eps, norm=self.norm, alpha=self.rel_step_size * eps, steps=self.steps,
            restarts=self.restarts, seed=self.seed, sample_ids=ids,
        )

    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Attack the batch at every ε and count the points that stay correctly classified."""
        worst = [torch.ones_like(y, dtype=torch.bool) for _ in self.eps]
        for attack in self.attacks:
            robust = torch.ones_like(y, dtype=torch.bool)
            for index, eps in enumerate(self.eps):
                adversarial = self._attack(attack, model, x, y, eps, sample_ids)
                with torch.no_grad():
                    robust &= model(adversarial).argmax(dim=1) == y
                worst[index] &= robust
                self._robust[(attack, eps)] += int(robust.sum())
        for index, eps in enumerate(self.eps):
            self._robust[("worst_case", eps)] += int(worst[index].sum())
        self._total += y.shape[0]

    def compute(self) -> list[Metric]:
        """``adversarial/robust_accuracy`` per attack and ε."""
        names = self.attacks + (["worst_case"] if len(self.attacks) > 1 else [])
        metrics = []
        for attack in names:
            for eps in self.eps:
                context = {"attack": attack, "norm": self.norm, "eps": round(eps, 7)}
                if attack == "pgd":
                    context |= {"steps": self.steps, "restarts": self.restarts}
                metrics.append(Metric(self.suite, "robust_accuracy", self._robust[(attack, eps)] / max(self._total, 1),
                                      context))
        return metrics
