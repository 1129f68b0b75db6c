"""OOD detection: fit detectors on ID training data, score ID test data against several OOD sets."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from robustlit.attacks import eval_mode
from robustlit.data.ood_sets import build_ood_set, ood_set_name
from robustlit.errors import ConfigError
from robustlit.metrics.ood import ood_metrics, roc_curve
from robustlit.module import unpack_batch
from robustlit.ood import DETECTORS, FeatureExtractor, OODDetector, build_detector, detector_name, hookable
from robustlit.reporting.schema import Artifact, Finding, Metric
from robustlit.suites.base import EvaluationSuite

#: Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FIT_SPLITS = ("train", "val")
METRIC_NAMES = ("auroc", "aupr_in", "aupr_out", "fpr95")


def save_figure(figure: Any, path: Path, alt_text: str) -> Path:
    """Save a matplotlib figure as PNG with its alt text in the file's ``Description`` and ``Title`` fields.

    Example:
        >>> import matplotlib.pyplot as plt  # doctest: +SKIP
        >>> save_figure(plt.figure(), Path("runs/x/plot.png"), "An empty figure.")  # doctest: +SKIP
        PosixPath('runs/x/plot.png')
    """
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Title": alt_text, "Description": alt_text})
    plt.close(figure)
    return path


class OODSuite(EvaluationSuite):
    """AUROC, AUPR-In, AUPR-Out and FPR@95%TPR of each detector against each OOD set, and their means.

    Evaluation suite; works on any LightningModule whose forward maps images to logits. At the start of
    the test loop the detectors are fitted on up to ``fit_limit`` samples of the datamodule's
    ``fit_split`` loader (``train``: ``trainer.datamodule.train_dataloader()``, with the datamodule's
    training augmentation; ``val``: its validation loader), in one pass shared by all detectors, and the OOD
    sets are scored. The test batches are then scored as the ID samples.

    Convention: scores are higher for ID inputs and ID is the positive class; ``fpr95`` is the fraction
    of OOD inputs accepted at the threshold that keeps 95% of ID inputs (see :mod:`robustlit.metrics.ood`).

    Rows: ``ood/{auroc,aupr_in,aupr_out,fpr95}`` ``{detector, ood_set}`` per pair, and with
    ``ood_set="mean"`` the mean over sets. :meth:`write_artifacts` saves score histograms and ROC curves.

    Args:
        detectors: Names from :data:`robustlit.ood.DETECTORS`, or mappings ``{name, label?, **options}``.
        ood_sets: Names (``digits``, ``gaussian``, ``uniform``, ``blobs``, ``held_out`` for a
            :class:`~robustlit.data.HeldOutClassesDataModule`) or mappings ``{name, path?, size?, label?}``
            (``svhn`` and ``folder`` need ``path``).
        ood_size: Images per generated OOD set (a cap for the others).
        fit_split: ``train`` or ``val``.
        fit_limit: Most ID samples to fit on.
        layer: Feature layer of the feature-based detectors (None: the final linear layer's input).
        seed: Seed of the noise sets and of the detectors' subsamples.
        batch_size: Batch size for scoring OOD sets (None: the fit loader's).
        limit: Only score the first ``limit`` test samples.
        stages: Loops to run in.

    Example:
        >>> suite = OODSuite(detectors=["msp", "energy", {"name": "knn", "k": 10}], ood_sets=["digits", "uniform"])
        >>> suite.detector_names
        ['msp', 'energy', 'knn']
    """

    suite = "ood"

    def __init__(
        self,
        detectors: Sequence[str | Mapping[str, Any]] = ("msp", "maxlogit", "energy", "odin", "mahalanobis", "knn",
                                                         "vim", "react"),
        ood_sets: Sequence[str | Mapping[str, Any]] = ("digits", "gaussian", "uniform", "blobs"),
        ood_size: int = 1000,
        fit_split: str = "train",
        fit_limit: int | None = 5000,
        layer: str | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        limit: int | None = None,
        stages: tuple[str, ...] | list[str] = ("test",),
    ) -> None:
        super().__init__(limit=limit, stages=stages)
        self.detector_specs = [dict(d) if isinstance(d, Mapping) else d for d in detectors]
        self.detector_names = [detector_name(d) for d in self.detector_specs]
        unknown = [d if isinstance(d, str) else d.get("name") for d in self.detector_specs
                   if (d if isinstance(d, str) else d.get("name")) not in DETECTORS]
        if unknown or not detectors:
            raise MisconfigurationException(
                f"OODSuite detectors {unknown or '[]'} are unknown; choose from {', '.join(DETECTORS)}"
            )
        if len(set(self.detector_names)) != len(self.detector_names):
            raise MisconfigurationException(
                f"OODSuite detectors {self.detector_names} repeat a name; give repeats a distinct label"
            )
        self.ood_specs = [dict(s) if isinstance(s, Mapping) else s for s in ood_sets]
        self.ood_names = [ood_set_name(s) for s in self.ood_specs]
        if not ood_sets or len(set(self.ood_names)) != len(self.ood_names):
            raise MisconfigurationException(f"OODSuite needs distinct OOD sets, got {self.ood_names}")
        if fit_split not in FIT_SPLITS:
            raise MisconfigurationException(f"OODSuite fit_split={fit_split!r}; choose one of {', '.join(FIT_SPLITS)}")
        if (fit_limit is not None and fit_limit < 1) or ood_size < 1 or (batch_size is not None and batch_size < 1):
            raise MisconfigurationException("OODSuite needs fit_limit, ood_size and batch_size >= 1 (or null)")
        self.ood_size = ood_size
        self.fit_split = fit_split
        self.fit_limit = fit_limit
        self.layer = layer
        self.seed = seed
        self.batch_size = batch_size
        self.detectors: dict[str, OODDetector] = {}
        self.warnings: list[Finding] = []
        self.ood_scores: dict[str, dict[str, Tensor]] = {}

    def reset(self) -> None:
        """Nothing to reset: ID scores live in the suite's store, OOD scores are set by :meth:`prepare`."""

    def prepare(self, model: nn.Module, fit_loader: Any, held_out: Dataset | None = None) -> None:
        """Build and fit the detectors on ``fit_loader`` and score every OOD set.

        Args:
            model: The classifier.
            fit_loader: ``(x, y)`` batches of ID training data (at most ``fit_limit`` samples are used).
            held_out: The ``held_out`` OOD set, when one is configured.
        """
        self.warnings = []
        with eval_mode(model), torch.inference_mode(False):
            self.detectors = {}
            for name, spec in zip(self.detector_names, self.detector_specs, strict=True):
                kind = DETECTORS[spec if isinstance(spec, str) else spec["name"]]
                if kind.uses_features and not hookable(model):
                    self.warnings.append(Finding(
                        self.suite, "detector_skipped",
                        f"{name} skipped: it reads features through forward hooks, which TorchScript models do not "
                        "run; load the weights into their architecture (model=<arch> model.checkpoint=state_dict)",
                        {"detector": name},
                    ))
                    rank_zero_warn(self.warnings[-1].message)
                    continue
                self.detectors[name] = build_detector(spec, model, self.layer)
            if not self.detectors:
                raise ConfigError("OODSuite has no detector that works on this model; add msp, energy or odin")
            self._extractor = self._shared_extractor(model)
            shape, batch_size = self._fit(model, fit_loader)
            self.ood_scores = {}
            for name, spec in zip(self.ood_names, self.ood_specs, strict=True):
                dataset = self._ood_dataset(spec, shape, held_out)
                loader = DataLoader(dataset, batch_size=self.batch_size or batch_size)
                scores: dict[str, list[Tensor]] = {d: [] for d in self.detectors}
                for batch in loader:
                    x, _ = unpack_batch(batch)
                    for detector, values in self._score(model, x.to(_device(model))).items():
                        scores[detector].append(values.cpu())
                self.ood_scores[name] = {d: torch.cat(v) for d, v in scores.items()}

    def _shared_extractor(self, model: nn.Module) -> FeatureExtractor | None:
        if any(d.uses_features for d in self.detectors.values()):
            return FeatureExtractor(model, self.layer)
        return None

    def _outputs(self, model: nn.Module, x: Tensor) -> tuple[Tensor | None, Tensor]:
        if self._extractor is not None:
            return self._extractor(x)
        return None, model(x).float()

    def _fit(self, model: nn.Module, loader: Any) -> tuple[tuple[int, ...], int]:
        fitting = [d for d in self.detectors.values() if d.requires_fit]
        for detector in fitting:
            detector.start_fit()
        seen, shape, batch_size = 0, None, 256
        with torch.no_grad():
            for batch in loader:
                x, y = unpack_batch(batch)
                if shape is None:
                    shape, batch_size = tuple(x.shape[1:]), x.shape[0]
                    if not fitting:
                        break
                if self.fit_limit is not None:
                    x, y = x[: self.fit_limit - seen], y[: self.fit_limit - seen]
                features, logits = self._outputs(model, x.to(_device(model)))
                for detector in fitting:
                    detector.partial_fit(features, logits, y.to(logits.device))
                seen += len(y)
                if self.fit_limit is not None and seen >= self.fit_limit:
                    break
        if shape is None:
            raise ConfigError("OODSuite's fit loader yielded no batches; the ID training data is empty")
        for detector in fitting:
            detector.finish_fit()
        return shape, batch_size

    def _ood_dataset(self, spec: str | Mapping[str, Any], shape: tuple[int, ...], held_out: Dataset | None) -> Dataset:
        name = spec if isinstance(spec, str) else spec.get("name")
        if name == "held_out":
            if held_out is None:
                raise ConfigError(
                    "ood_sets has held_out but the data has no held-out classes; use data=HeldOutClassesDataModule "
                    "(robustlit.data) or drop held_out"
                )
            return held_out
        channels, image_size = shape[0], shape[-1]
        return build_ood_set(spec, image_size=image_size, channels=channels, size=self.ood_size, seed=self.seed)

    def _score(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        scores = {}
        with torch.no_grad():
            features, logits = self._outputs(model, x)
            for name, detector in self.detectors.items():
                if not detector.needs_input_gradients:
                    scores[name] = detector.score_outputs(features, logits).float()
        for name, detector in self.detectors.items():
            if detector.needs_input_gradients:
                scores[name] = detector.score(x).float()
        return {name: scores[name] for name in self.detectors}

    def update(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor) -> None:
        """Score a batch of ID test images with every detector."""
        if not self.detectors:
            raise RuntimeError("OODSuite.prepare(model, fit_loader) must run before the test batches")
        for name, values in self._score(model, x).items():
            self.store(f"score:{name}", values, sample_ids)

    def compute(self) -> list[Metric]:
        """``ood/{auroc,aupr_in,aupr_out,fpr95}`` per detector and OOD set, plus ``ood_set="mean"`` rows."""
        if not self.detectors or f"score:{next(iter(self.detectors))}" not in self._stored:
            return []
        rows = []
        for detector in self.detectors:
            id_scores = self.stored(f"score:{detector}")
            per_set = {name: ood_metrics(id_scores, self.ood_scores[name][detector]) for name in self.ood_names}
            for name, values in per_set.items():
                rows += [Metric(self.suite, metric, values[metric], {"detector": detector, "ood_set": name})
                         for metric in METRIC_NAMES]
            rows += [
                Metric(self.suite, metric, sum(v[metric] for v in per_set.values()) / len(per_set),
                       {"detector": detector, "ood_set": "mean"})
                for metric in METRIC_NAMES
            ]
        return rows

    def evaluate(self, model: nn.Module, loader: Any, fit_loader: Any = None,
                 held_out: Dataset | None = None) -> list[Metric]:
        """Fit on ``fit_loader``, score the OOD sets and ``loader`` (the ID test data), without a Trainer.

        Example:
            >>> metrics = OODSuite().evaluate(model, test_loader, fit_loader=train_loader)  # doctest: +SKIP
        """
        if fit_loader is None:
            raise ConfigError("OODSuite.evaluate needs fit_loader=… (ID training batches to fit the detectors)")
        began = time.perf_counter()
        self.prepare(model, fit_loader, held_out)
        prepared = time.perf_counter() - began
        metrics = super().evaluate(model, loader)
        self.seconds += prepared
        return metrics

    def _prepare_from_trainer(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ConfigError(
                "OODSuite fits its detectors on the datamodule's ID data; pass datamodule= to the Trainer"
            )
        if self.fit_split == "train" and not getattr(datamodule, "has_train", True):
            raise ConfigError(
                f"OODSuite fits on ID training data but data={getattr(datamodule, 'name', '?')} has no training "
                "split; use a data root with train/ and test/ folders"
            )
        loader = datamodule.train_dataloader() if self.fit_split == "train" else datamodule.val_dataloader()
        began = time.perf_counter()
        self.prepare(pl_module, loader, getattr(datamodule, "ood_dataset", None))
        self.seconds += time.perf_counter() - began

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reset, fit the detectors and score the OOD sets before the test loop."""
        super().on_test_epoch_start(trainer, pl_module)
        if "test" in self.stages:
            self._prepare_from_trainer(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reset, fit the detectors and score the OOD sets before the validation loop."""
        super().on_validation_epoch_start(trainer, pl_module)
        if "validate" in self.stages and not trainer.sanity_checking:
            self._prepare_from_trainer(trainer, pl_module)

    def write_artifacts(self, output_dir: Path) -> list[Artifact]:
        """Save ``ood_score_histograms.png`` and ``ood_roc.png`` (one panel per detector)."""
        if not self.detectors or f"score:{next(iter(self.detectors))}" not in self._stored:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.detectors)
        count = len(names)
        columns = min(4, count)
        grid = ((count + columns - 1) // columns, columns)
        hist_figure, hist_axes = plt.subplots(*grid, figsize=(4 * columns, 3 * grid[0]), squeeze=False)
        roc_figure, roc_axes = plt.subplots(*grid, figsize=(4 * columns, 3.6 * grid[0]), squeeze=False)
        summary = []
        for index, detector in enumerate(names):
            hist_axis, roc_axis = hist_axes.flat[index], roc_axes.flat[index]
            id_scores = self.stored(f"score:{detector}").double()
            sets = {"ID test": id_scores} | {name: self.ood_scores[name][detector].double() for name in self.ood_names}
            low = min(float(v.min()) for v in sets.values())
            high = max(float(v.max()) for v in sets.values())
            edges = torch.linspace(low, high if high > low else low + 1, 41).numpy()
            for colour, (name, values) in zip(PALETTE, sets.items(), strict=False):
                hist_axis.hist(values.numpy(), bins=edges, density=True, histtype="step", linewidth=1.5,
                               color=colour, label=name)
            hist_axis.set_title(detector)
            hist_axis.set_xlabel("score (higher = more in-distribution)")
            for colour, name in zip(PALETTE[1:], self.ood_names, strict=False):
                curve = roc_curve(id_scores, self.ood_scores[name][detector])
                roc_axis.plot(curve.fpr.numpy(), curve.tpr.numpy(), color=colour, label=name)
            roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            roc_axis.set_title(detector)
            roc_axis.set_xlabel("FPR (OOD accepted)")
            roc_axis.set_ylabel("TPR (ID accepted)")
            means = [r.value for r in self.results
                     if r.name == "auroc" and r.context == {"detector": detector, "ood_set": "mean"}]
            if means:
                summary.append(f"{detector} {means[0]:.3f}")
        for axes in (hist_axes, roc_axes):
            for axis in axes.flat[count:]:
                axis.set_visible(False)
            axes.flat[0].legend(fontsize=7)
        sets_text = ", ".join(self.ood_names)
        auroc_text = f" Mean AUROC: {', '.join(summary)}." if summary else ""
        hist_path = save_figure(
            hist_figure, Path(output_dir) / "ood_score_histograms.png",
            f"Histograms of OOD detector scores, one panel per detector ({', '.join(names)}), "
            f"comparing ID test data with the OOD sets {sets_text}.{auroc_text}",
        )
        roc_path = save_figure(
            roc_figure, Path(output_dir) / "ood_roc.png",
            f"ROC curves (ID positive) of each OOD detector against the OOD sets {sets_text}.{auroc_text}",
        )
        return [Artifact(hist_path.name, "plot", str(hist_path)), Artifact(roc_path.name, "plot", str(roc_path))]


def _device(model: nn.Module) -> torch.device:
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
