"""Certified robustness: certified accuracy against radius for smoothing, IBP/CROWN and Lipschitz certificates."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from robustlit.attacks import parse_eps
from robustlit.certify import CertifiedResult, certify_linf, lipschitz_bound, lipschitz_certify, smoothed_certify
from robustlit.certify.verify import METHODS as LINF_METHODS
from robustlit.reporting.schema import Artifact, Metric
from robustlit.suites.base import EvaluationSuite

CERTIFY_METHODS = ("smoothing", *LINF_METHODS, "lipschitz")


class CertifiedSuite(EvaluationSuite):
    """Certified accuracy at each radius, abstention rate and median certified radius per method.

    Evaluation suite; works on any LightningModule (smoothing needs only forward passes; IBP, CROWN
    and Lipschitz certificates need a model built from supported layers, see
    :mod:`robustlit.certify.graph`).

    Methods and their guarantees:

    - ``smoothing`` (Cohen et al.): L2 certificates of the *smoothed* classifier, each wrong with
      probability at most ``alpha`` (``guarantee="probabilistic(α)"``); abstentions count as wrong and
      are reported as ``certified/abstain_rate``.
    - ``ibp``, ``crown-ibp``, ``crown``: deterministic L∞ certificates of the model itself at each ε of
      ``eps`` (within the image box [0, 1]).
    - ``lipschitz``: deterministic L2 certificates ``margin / (√2·L)`` with a global Lipschitz bound ``L``.

    A sample counts as certified at radius ``r`` when it is classified correctly and its certified
    radius is at least ``r``. ``median_radius`` is the median over samples of the certified radius of
    correct predictions (0 for errors and abstentions).

    Args:
        methods: Any of ``smoothing``, ``ibp``, ``crown-ibp``, ``crown``, ``lipschitz``.
        sigma: Smoothing noise level in input units.
        n0: Smoothing selection draws.
        n: Smoothing estimation draws (Cohen et al. use 100 000).
        alpha: Smoothing failure probability per certificate.
        radii: L2 radii of the certified-accuracy table.
        eps: L∞ radii (numbers or fractions like ``"2/255"``) for IBP/CROWN.
        seed: Seed of the smoothing noise streams.
        batch_size: Noisy images per forward pass when smoothing.
        limit: Only certify the first ``limit`` test samples.
        stages: Loops to run in.

    Example:
        >>> suite = CertifiedSuite(methods=["smoothing", "ibp"], sigma=0.25, n=1000, eps=["2/255"])
        >>> [round(e * 255) for e in suite.eps]
        [2]
    """

    suite = "certified"

    def __init__(
        self,
        methods: Sequence[str] = ("smoothing", "ibp", "lipschitz"),
        sigma: float = 0.25,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        eps: Sequence[float | str] = ("1/255", "2/255", "8/255"),
        seed: int = 0,
        batch_size: int = 1000,
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        unknown = [m for m in methods if m not in CERTIFY_METHODS]
        if unknown or not methods:
            raise MisconfigurationException(
                f"CertifiedSuite methods {unknown or '[]'} are unknown; choose from {', '.join(CERTIFY_METHODS)}"
            )
        if sigma <= 0 or n0 < 1 or n < 1 or not 0 < alpha < 1 or batch_size < 1:
            raise MisconfigurationException(
                f"CertifiedSuite needs sigma > 0, n0 >= 1, n >= 1, 0 < alpha < 1 and batch_size >= 1; got sigma="
                f"{sigma}, n0={n0}, n={n}, alpha={alpha}, batch_size={batch_size}"
            )
        self.eps = sorted(parse_eps(value) for value in eps)
        self.radii = sorted(float(r) for r in radii)
        if any(r < 0 for r in self.radii) or any(e < 0 for e in self.eps):
            raise MisconfigurationException(
                f"CertifiedSuite radii and eps must be >= 0, got {list(radii)}, {list(eps)}"
            )
        self.methods = list(dict.fromkeys(methods))
        self.sigma, self.n0, self.n, self.alpha = float(sigma), n0, n, alpha
        self.seed = seed
        self.batch_size = batch_size
        self.certificates: dict[str, CertifiedResult] = {}

    def reset(self) -> None:
        """Forget the previous epoch's certificates and Lipschitz bound."""
        self._kinds: dict[str, tuple[str, str]] = {}
        self._lipschitz: float | None = None
        self.certificates = {}

    def _certify(self, method: str, model: nn.Module, x: Tensor, sample_ids: Tensor) -> CertifiedResult:
        if method == "smoothing":
            return smoothed_certify(model, x, sigma=self.sigma, n0=self.n0, n=self.n, alpha=self.alpha,
                                    seed=self.seed, sample_ids=sample_ids, batch_size=self.batch_size)
        if method == "lipschitz":
            if self._lipschitz is None:
                self._lipschitz = lipschitz_bound(model, tuple(x.shape[1:]))
            return lipschitz_certify(model, x, self._lipschitz)
        return certify_linf(model, x, self.eps, method=method)

    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Certify the batch with every method and store per-sample predictions and radii."""
        self.store("label", y, sample_ids)
        for method in self.methods:
            result = self._certify(method, model, x, sample_ids)
            self._kinds[method] = (result.norm, result.guarantee)
            self.store(f"{method}/prediction", result.prediction, sample_ids)
            self.store(f"{method}/radius", result.radius, sample_ids)

    def compute(self) -> list[Metric]:
        """``certified/certified_accuracy``, ``certified/abstain_rate`` and ``certified/median_radius`` rows."""
        if not self._kinds:
            return []
        labels = self.stored("label")
        metrics = []
        for method in self.methods:
            norm, guarantee = self._kinds[method]
            result = CertifiedResult(method, norm, guarantee, self.stored(f"{method}/prediction"),
                                     self.stored(f"{method}/radius"))
            self.certificates[method] = result
            radii = self.radii if norm == "L2" else self.eps
            kind = {"method": method, "norm": norm, "guarantee": guarantee}
            for radius, accuracy in zip(radii, result.certified_accuracy(labels, radii), strict=True):
                metrics.append(Metric(self.suite, "certified_accuracy", accuracy, {**kind, "radius": round(radius, 7)}))
            metrics.append(Metric(self.suite, "abstain_rate", result.abstain_rate, {"method": method}))
            metrics.append(Metric(self.suite, "median_radius", result.median_radius(labels), kind))
        return metrics

    def write_artifacts(self, output_dir: Path) -> list[Artifact]:
        """``certified_radii.csv`` (per-sample predictions and radii) and ``certified_accuracy.png`` (the curves)."""
        if not self.certificates:
            return []
        output_dir.mkdir(parents=True, exist_ok=True)
        labels = self.stored("label")
        table = output_dir / "certified_radii.csv"
        with table.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample", "label", "method", "norm", "guarantee", "prediction", "radius"])
            for method, result in self.certificates.items():
                for i, (label, prediction, radius) in enumerate(
                    zip(labels.tolist(), result.prediction.tolist(), result.radius.tolist(), strict=True)
                ):
                    writer.writerow([i, label, method, result.norm, result.guarantee, prediction, f"{radius:.7g}"])
        artifacts = [Artifact(table.name, "table", str(table))]
        plot = self._plot(output_dir / "certified_accuracy.png", labels)
        if plot is not None:
            artifacts.append(Artifact(plot.name, "plot", str(plot)))
        return artifacts

    def _plot(self, path: Path, labels: Tensor) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        norms = sorted({result.norm for result in self.certificates.values()})
        figure, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 3.5), squeeze=False)
        for axis, norm in zip(axes[0], norms, strict=True):
            for method, result in self.certificates.items():
                if result.norm != norm:
                    continue
                top = max(float(result.radius.max()), max(self.radii if norm == "L2" else self.eps, default=0.0))
                grid = torch.linspace(0, max(top, 1e-6) * 1.05, 200).tolist()
                axis.plot(grid, result.certified_accuracy(labels, grid), label=f"{method} ({result.guarantee})")
            axis.set_xlabel(f"{norm} radius")
            axis.set_ylabel("certified accuracy")
            axis.set_ylim(0, 1)
            axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path
