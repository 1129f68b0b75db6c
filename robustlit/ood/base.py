"""The detector interface: ``fit(id_loader)`` then ``score(x)``, higher scores meaning more in-distribution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustlit.attacks import eval_mode
from robustlit.errors import DataError
from robustlit.ood.features import FeatureExtractor


class OODDetector:
    """Base class of the OOD detectors.

    Convention: :meth:`score` is **higher for in-distribution inputs**; the OOD metrics in
    :mod:`robustlit.metrics.ood` treat ID as the positive class.

    Detectors that need statistics of the ID data (``requires_fit``) gather them with :meth:`partial_fit`
    on ``(features, logits, labels)`` of each batch and :meth:`finish_fit`; :meth:`fit` runs that over a
    loader. Feature-based detectors (``uses_features``) read features through a
    :class:`~robustlit.ood.features.FeatureExtractor`. A caller that already has the features and logits
    of a batch (the OOD suite runs one forward pass for all detectors) calls :meth:`score_outputs`;
    detectors that perturb the input (``needs_input_gradients``) must be scored with :meth:`score`.

    Args:
        model: The classifier (images in [0, 1] → logits); it is run in eval mode and left as it was.
        layer: Feature layer name for feature-based detectors (None: the input of the final linear layer).

    Example:
        >>> from robustlit.ood import MSP
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> MSP(net).score(torch.rand(4, 3, 2, 2)).shape
        torch.Size([4])
    """

    name = "detector"
    requires_fit = False
    uses_features = False
    needs_input_gradients = False

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        self.model = model
        self.layer = layer
        self.extractor = FeatureExtractor(model, layer) if self.uses_features else None
        self.fitted = not self.requires_fit

    def outputs(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """Features (None unless ``uses_features``) and float32 logits of a batch."""
        if self.extractor is not None:
            return self.extractor(x)
        return None, self.model(x).float()

    def fit(self, id_loader: Any, limit: int | None = None) -> OODDetector:
        """Gather the ID statistics from ``(x, y)`` batches (at most ``limit`` samples); returns ``self``."""
        if not self.requires_fit:
            return self
        self.start_fit()
        device = _device(self.model)
        seen = 0
        with eval_mode(self.model), torch.no_grad():
            for batch in id_loader:
                x, y = _split_batch(batch)
                if limit is not None:
                    x, y = x[: limit - seen], y[: limit - seen]
                features, logits = self.outputs(x.to(device))
                self.partial_fit(features, logits, y.to(logits.device))
                seen += len(y)
                if limit is not None and seen >= limit:
                    break
        self.finish_fit()
        return self

    def start_fit(self) -> None:
        """Forget previous statistics."""

    def partial_fit(self, features: Tensor | None, logits: Tensor, labels: Tensor) -> None:
        """Add one batch of ID outputs to the statistics."""

    def finish_fit(self) -> None:
        """Turn the gathered statistics into what :meth:`score_outputs` uses."""
        self.fitted = True

    def score(self, x: Tensor) -> Tensor:
        """Scores ``(N,)`` of a batch of images, higher = more in-distribution."""
        self._check_fitted()
        with eval_mode(self.model), torch.no_grad():
            features, logits = self.outputs(x)
            return self.score_outputs(features, logits)

    def score_outputs(self, features: Tensor | None, logits: Tensor) -> Tensor:
        """Scores from a batch's features and logits."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} needs fit(id_loader) before score()")


def _device(model: nn.Module) -> torch.device:
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _split_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a ``(x, y, …)`` sequence or an ``{"image", "label"}`` dict (the core imports no Lightning)."""
    if isinstance(batch, Mapping) and "image" in batch and "label" in batch:
        return batch["image"], batch["label"]
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1]
    raise DataError(f"cannot read a batch of type {type(batch).__name__}; OOD detectors fit on (x, y) batches")
