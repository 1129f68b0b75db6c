"""Selective prediction: how the error rate falls as the model abstains on its least confident inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.metrics import aurc, coverage_at_risk, excess_aurc, risk_coverage_curve
from robustlit.reporting.schema import Artifact, Metric
from robustlit.suites.base import EvaluationSuite
from robustlit.suites.ood import save_figure


class SelectiveSuite(EvaluationSuite):
    """AURC, E-AURC and coverage at target risks, ranking inputs by maximum softmax probability.

    Evaluation suite; works on any LightningModule. Rows: ``selective/aurc`` and ``selective/e_aurc``
    ``{n}``; ``selective/coverage_at_risk`` ``{risk, threshold}`` (value: the largest coverage whose risk
    is at most ``risk``). :meth:`write_artifacts` saves the risk–coverage curve.

    Args:
        risks: Target risks (error rates) for ``coverage_at_risk``.
        limit: Only evaluate the first ``limit`` samples.
        stages: Loops to run in.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[SelectiveSuite(risks=[0.01, 0.05])])  # doctest: +SKIP
    """

    suite = "selective"

    def __init__(
        self,
        risks: Sequence[float] = (0.01, 0.02, 0.05, 0.1),
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        bad = [r for r in risks if not 0 <= r <= 1]
        if bad:
            raise MisconfigurationException(f"SelectiveSuite risks must be in [0, 1], got {bad}")
        self.risks = [float(r) for r in risks]

    def reset(self) -> None:
        """Nothing to reset: per-sample results live in the suite's store."""

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Store each sample's confidence and whether its prediction is right."""
        confidence, predicted = model(x).float().softmax(dim=1).max(dim=1)
        self.store("confidence", confidence, sample_ids)
        self.store("correct", predicted == y, sample_ids)

    def compute(self) -> list[Metric]:
        """``selective/{aurc,e_aurc,coverage_at_risk}``."""
        if "confidence" not in self._stored:
            return []
        confidence, correct = self.stored("confidence"), self.stored("correct")
        n = {"n": len(correct)}
        rows = [
            Metric(self.suite, "aurc", aurc(confidence, correct), n),
            Metric(self.suite, "e_aurc", excess_aurc(confidence, correct), n),
        ]
        for risk in self.risks:
            chosen = coverage_at_risk(confidence, correct, risk)
            threshold = chosen.threshold if chosen.coverage > 0 else 1.0
            rows.append(Metric(self.suite, "coverage_at_risk", chosen.coverage,
                               {"risk": risk, "threshold": round(threshold, 6)}))
        return rows

    def write_artifacts(self, output_dir: Path) -> list[Artifact]:
        """Save ``selective_risk_coverage.png``, the risk–coverage curve."""
        if "confidence" not in self._stored:
            return []
        curve = risk_coverage_curve(self.stored("confidence"), self.stored("correct"))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.6))
        axis.plot(curve.coverage.numpy(), curve.risk.numpy(), color="#0072B2")
        axis.set_xlabel("coverage")
        axis.set_ylabel("risk (error rate among accepted)")
        axis.set_xlim(0, 1)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.set_title("risk–coverage (ranked by max softmax)")
        full_risk = float(curve.risk[-1])
        alt = (f"Risk-coverage curve of {len(curve.risk)} test samples ranked by maximum softmax probability; "
               f"risk at full coverage {full_risk:.3f}, AURC {float(curve.risk.mean()):.4f}.")
        path = save_figure(figure, Path(output_dir) / "selective_risk_coverage.png", alt)
        return [Artifact(path.name, "plot", str(path))]
