"""Calibration of the predicted probabilities, before and after temperature scaling, in domain and under shift."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.metrics import (
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    coverage_at_risk,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from robustlit.reporting.schema import Finding, Metric
from robustlit.suites.base import EvaluationSuite

IN_DOMAIN = "in_domain"


class CalibrationSuite(EvaluationSuite):
    """ECE (equal-width, adaptive, classwise), MCE, NLL, Brier, temperature scaling and confidence thresholds.

    Evaluation suite; works on any LightningModule. With ``temperature_scaling`` a seeded
    ``holdout_fraction`` of the evaluated test samples (chosen by sample id, independent of batching) is
    held out: the temperature (:func:`~robustlit.metrics.fit_temperature`) and the confidence thresholds are
    fitted on it, and every metric is reported on the *other* samples, once at ``temperature=1`` and once at
    the fitted temperature, so the two are comparable. Without it, every sample is evaluated at ``T = 1``
    and thresholds are chosen on the evaluated samples themselves.

    Under shift, each ``corruptions`` × ``severities`` pair (:func:`robustlit.corruptions.corrupt`, seeded
    per sample) is evaluated on the same samples, with the in-domain temperature, as split
    ``"<corruption>/<severity>"``.

    Rows: ``calibration/{ece,adaptive_ece,classwise_ece,mce,nll,brier}`` ``{bins, temperature, split}``;
    ``calibration/temperature`` ``{split: "holdout", n, converged, nll_before, nll_after}``;
    ``calibration/bin_accuracy`` ``{bin, lo, hi, confidence, count, split, temperature}`` per non-empty
    equal-width bin (reliability diagrams); ``calibration/threshold`` ``{target_risk, coverage, risk,
    temperature, split}`` whose value is the lowest confidence threshold meeting the target risk on the
    holdout, with the coverage and risk it gives on the evaluated samples.

    Args:
        n_bins: Bins for the ECE variants and MCE (15 as in Guo et al. 2017).
        temperature_scaling: Fit and report a temperature.
        holdout_fraction: Share of the samples held out to fit the temperature and thresholds.
        holdout_seed: Seed of the holdout draw.
        target_risks: Error rates to recommend confidence thresholds for.
        corruptions: Corruption names for calibration under shift (none by default).
        severities: Severities of each corruption.
        seed: Seed of the corruptions' per-sample noise.
        limit: Only evaluate the first ``limit`` samples.
        stages: Loops to run in.

    Example:
        >>> import lightning as L
        >>> suite = CalibrationSuite(n_bins=15, corruptions=["gaussian_noise"], severities=[3])
        >>> trainer = L.Trainer(callbacks=[suite])  # doctest: +SKIP
    """

    suite = "calibration"

    def __init__(
        self,
        n_bins: int = 15,
        temperature_scaling: bool = True,
        holdout_fraction: float = 0.2,
        holdout_seed: int = 0,
        target_risks: Sequence[float] = (0.01, 0.02, 0.05, 0.1),
        corruptions: Sequence[str] = (),
        severities: Sequence[int] = (1, 2, 3, 4, 5),
        seed: int = 0,
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        if n_bins < 1:
            raise MisconfigurationException(f"CalibrationSuite n_bins must be at least 1, got {n_bins}")
        if temperature_scaling and not 0 < holdout_fraction < 1:
            raise MisconfigurationException(
                f"CalibrationSuite holdout_fraction must be in (0, 1) with temperature_scaling, got {holdout_fraction}"
            )
        bad_risks = [r for r in target_risks if not 0 <= r <= 1]
        if bad_risks:
            raise MisconfigurationException(f"CalibrationSuite target_risks must be in [0, 1], got {bad_risks}")
        if corruptions:
            from robustlit.corruptions import CORRUPTIONS

            unknown = [c for c in corruptions if c not in CORRUPTIONS]
            if unknown:
                raise MisconfigurationException(
                    f"CalibrationSuite corruptions {unknown} are unknown; choose from {', '.join(CORRUPTIONS)}"
                )
            bad = [s for s in severities if s not in (1, 2, 3, 4, 5)]
            if bad or not severities:
                raise MisconfigurationException(f"CalibrationSuite severities must be in 1..5, got {list(severities)}")
        self.n_bins = n_bins
        self.temperature_scaling = temperature_scaling
        self.holdout_fraction = holdout_fraction
        self.holdout_seed = holdout_seed
        self.target_risks = [float(r) for r in target_risks]
        self.shifts = [(str(c), int(s)) for c in corruptions for s in severities]
        self.seed = seed
        self.warnings: list[Finding] = []
        self.temperature: float | None = None

    def reset(self) -> None:
        """Forget the previous epoch's warnings (logits live in the suite's store)."""
        self.warnings = []
        self.temperature = None

    @torch.no_grad()
    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Store the logits of the clean and of every corrupted batch, and the labels."""
        self.store("labels", y, sample_ids)
        self.store("logits", model(x).float(), sample_ids)
        if self.shifts:
            from robustlit.corruptions import corrupt

            for corruption, severity in self.shifts:
                shifted = corrupt(x, corruption, severity, seed=self.seed, sample_ids=sample_ids)
                self.store(f"logits:{corruption}/{severity}", model(shifted).float(), sample_ids)

    def split_indices(self, n: int) -> tuple[Tensor, Tensor]:
        """Positions (in sample-id order) of the holdout and of the evaluated samples.

        Example:
            >>> holdout, evaluated = CalibrationSuite(holdout_fraction=0.2).split_indices(10)
            >>> len(holdout), len(evaluated), sorted(holdout.tolist() + evaluated.tolist()) == list(range(10))
            (2, 8, True)
        """
        if not self.temperature_scaling:
            return torch.empty(0, dtype=torch.long), torch.arange(n)
        order = np.random.RandomState(self.holdout_seed).permutation(n)
        count = int(round(self.holdout_fraction * n))
        return torch.from_numpy(np.sort(order[:count])), torch.from_numpy(np.sort(order[count:]))

    def compute(self) -> list[Metric]:
        """Every calibration row (see the class docstring)."""
        if "logits" not in self._stored:
            return []
        logits, labels = self.stored("logits"), self.stored("labels")
        holdout, evaluated = self.split_indices(len(labels))
        metrics: list[Metric] = []
        temperatures = [1.0]
        if self.temperature_scaling:
            if len(holdout) < 1 or len(evaluated) < 1:
                self._warn("holdout_too_small", f"{len(labels)} samples are too few to hold out a split; "
                           "temperature scaling skipped", {"n": len(labels)})
                holdout, evaluated = torch.empty(0, dtype=torch.long), torch.arange(len(labels))
            else:
                fit = fit_temperature(logits[holdout], labels[holdout])
                if not fit.converged:
                    self._warn("temperature_not_converged",
                               f"temperature scaling did not converge (dNLL/dlogT = {fit.gradient:.2e}, "
                               f"T = {fit.temperature:.4g}); the holdout may be separable or too small",
                               {"gradient": fit.gradient, "temperature": fit.temperature})
                self.temperature = fit.temperature
                temperatures.append(fit.temperature)
                metrics.append(Metric(self.suite, "temperature", fit.temperature, {
                    "split": "holdout", "n": len(holdout), "converged": fit.converged,
                    "nll_before": round(fit.nll_before, 6), "nll_after": round(fit.nll_after, 6),
                }))
        splits = [(IN_DOMAIN, logits)] + [
            (f"{c}/{s}", self.stored(f"logits:{c}/{s}")) for c, s in self.shifts
        ]
        for split, split_logits in splits:
            for temperature in temperatures:
                metrics += self._split_rows(split_logits[evaluated] / temperature, labels[evaluated],
                                            split, temperature)
        best = temperatures[-1]
        chooser = (logits[holdout], labels[holdout]) if len(holdout) else (logits[evaluated], labels[evaluated])
        metrics += self._threshold_rows(chooser, (logits[evaluated], labels[evaluated]), best)
        for warning in self.warnings:
            rank_zero_warn(f"[calibration/{warning.check}] {warning.message}")
        return metrics

    def _split_rows(self, logits: Tensor, labels: Tensor, split: str, temperature: float) -> list[Metric]:
        probs = logits.softmax(dim=1)
        t = round(temperature, 4)
        context = {"bins": self.n_bins, "temperature": t, "split": split}
        rows = [
            Metric(self.suite, "ece", expected_calibration_error(probs, labels, self.n_bins), context),
            Metric(self.suite, "adaptive_ece", adaptive_calibration_error(probs, labels, self.n_bins), context),
            Metric(self.suite, "classwise_ece", classwise_calibration_error(probs, labels, self.n_bins), context),
            Metric(self.suite, "mce", maximum_calibration_error(probs, labels, self.n_bins), context),
            Metric(self.suite, "nll", negative_log_likelihood(logits, labels), context),
            Metric(self.suite, "brier", brier_score(probs, labels), context),
        ]
        bins = reliability_bins(probs, labels, self.n_bins)
        for index in torch.nonzero(bins.counts).flatten().tolist():
            rows.append(Metric(self.suite, "bin_accuracy", float(bins.accuracy[index]), {
                "bin": index, "lo": round(float(bins.edges[index]), 6), "hi": round(float(bins.edges[index + 1]), 6),
                "confidence": round(float(bins.confidence[index]), 6), "count": int(bins.counts[index]),
                "split": split, "temperature": t,
            }))
        return rows

    def _threshold_rows(self, chooser: tuple[Tensor, Tensor], evaluated: tuple[Tensor, Tensor],
                        temperature: float) -> list[Metric]:
        def confidence_and_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
            confidence, predicted = (logits / temperature).softmax(dim=1).max(dim=1)
            return confidence, predicted == labels

        choose_conf, choose_correct = confidence_and_correct(*chooser)
        eval_conf, eval_correct = confidence_and_correct(*evaluated)
        rows = []
        for target in self.target_risks:
            chosen = coverage_at_risk(choose_conf, choose_correct, target)
            if chosen.coverage == 0:
                self._warn("risk_unreachable", f"no confidence threshold reaches risk <= {target}",
                           {"target_risk": target})
                continue
            accepted = eval_conf.double() >= chosen.threshold
            coverage = float(accepted.double().mean())
            risk = float((~eval_correct[accepted]).double().mean()) if bool(accepted.any()) else 0.0
            rows.append(Metric(self.suite, "threshold", chosen.threshold, {
                "target_risk": target, "coverage": round(coverage, 6), "risk": round(risk, 6),
                "temperature": round(temperature, 4), "split": IN_DOMAIN,
            }))
        return rows

    def _warn(self, check: str, message: str, details: dict) -> None:
        self.warnings.append(Finding(self.suite, check, message, details))
