"""OOD detectors with ``fit(id_loader)`` / ``score(x)``; every score is higher for in-distribution inputs.

MSP, MaxLogit, Energy and ODIN read the logits; Mahalanobis, KNN, ViM and ReAct read features through
forward hooks (the input of the final linear layer by default) and fit memory-bounded statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from robustlit.errors import ConfigError
from robustlit.ood.base import OODDetector
from robustlit.ood.features import FeatureExtractor, final_linear, hookable
from robustlit.ood.knn import KNN
from robustlit.ood.logit_scores import MSP, ODIN, Energy, MaxLogit
from robustlit.ood.mahalanobis import Mahalanobis
from robustlit.ood.react import ReAct
from robustlit.ood.vim import ViM

#: Detector name -> class.
DETECTORS: dict[str, type[OODDetector]] = {
    cls.name: cls for cls in (MSP, MaxLogit, Energy, ODIN, Mahalanobis, KNN, ViM, ReAct)
}


def build_detector(spec: str | Mapping[str, Any], model: nn.Module, layer: str | None = None) -> OODDetector:
    """A detector from a name (``"knn"``) or a mapping with ``name`` and options (``{"name": "knn", "k": 10}``).

    Args:
        spec: The detector and its options.
        model: The classifier it scores with.
        layer: Feature layer for feature-based detectors (a ``layer`` in ``spec`` wins).

    Raises:
        ConfigError: For an unknown name or options the detector does not take.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> build_detector({"name": "energy", "temperature": 2.0}, net).temperature
        2.0
    """
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    options.pop("label", None)
    name = options.pop("name", None)
    if name not in DETECTORS:
        raise ConfigError(f"unknown OOD detector {name!r}; choose from {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    if cls.uses_features or "layer" in options:
        options.setdefault("layer", layer)
    try:
        return cls(model, **options)
    except TypeError as error:
        raise ConfigError(f"OOD detector {name!r} got bad options {sorted(options)}: {error}") from error


def detector_name(spec: str | Mapping[str, Any]) -> str:
    """The report name of a detector spec: its ``label`` if given, else its ``name``.

    Example:
        >>> detector_name({"name": "odin", "label": "odin_t1000"}), detector_name("msp")
        ('odin_t1000', 'msp')
    """
    if isinstance(spec, str):
        return spec
    return str(spec.get("label") or spec.get("name"))


__all__ = [
    "DETECTORS",
    "KNN",
    "MSP",
    "ODIN",
    "Energy",
    "FeatureExtractor",
    "Mahalanobis",
    "MaxLogit",
    "OODDetector",
    "ReAct",
    "ViM",
    "build_detector",
    "detector_name",
    "final_linear",
    "hookable",
]
