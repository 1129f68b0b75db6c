"""Any timm model behind the built-in input normalization."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustlit.models.layers import Normalize

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class TimmClassifier(nn.Module):
    """A ``timm.create_model`` network with a :class:`Normalize` in front, so it takes images in [0, 1].

    ``timm`` is imported on first use because importing it takes seconds.

    Args:
        name: timm model name, e.g. ``"resnet18"`` (see ``timm.list_models()``).
        num_classes: Number of output logits (timm replaces the classifier head).
        in_channels: Number of input channels (timm adapts the stem, also for pretrained weights).
        pretrained: Load timm's pretrained weights (needs network access or a Hugging Face cache).
        drop_rate: Dropout before the classifier; ``None`` keeps timm's default.
        drop_path_rate: Stochastic-depth rate; ``None`` keeps timm's default (for models without it).
        mean: Per-channel input mean for the built-in normalization.
        std: Per-channel input standard deviation for the built-in normalization.

    Raises:
        ValueError: If ``name`` is not a timm model, the model rejects an option, or pretrained
            weights cannot be fetched.

    Example:
        >>> model = TimmClassifier("resnet18", num_classes=10, in_channels=1, mean=[0.5], std=[0.5])
        >>> model(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        name: str,
        num_classes: int = 1000,
        in_channels: int = 3,
        pretrained: bool = False,
        drop_rate: float | None = 0.0,
        drop_path_rate: float | None = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        import timm

        if not isinstance(name, str) or not timm.is_model(name):
            raise ValueError(f"name={name!r} is not a timm model; pick one from timm.list_models()")
        self.norm = Normalize(mean, std, channels=in_channels)
        # timm drops None kwargs itself, so None means "the model's default".
        drops = {"drop_rate": drop_rate, "drop_path_rate": drop_path_rate}
        try:
            self.backbone = timm.create_model(
                name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **drops
            )
        except TypeError as e:
            raise ValueError(
                f"timm model {name!r} rejects an option ({e}); set drop_rate/drop_path_rate to null"
            ) from e
        except OSError as e:
            raise ValueError(
                f"could not fetch pretrained weights for timm model {name!r} ({type(e).__name__}); "
                "check network access or the Hugging Face cache, or set pretrained=false"
            ) from e
        self.model_name = f"timm/{name}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)`` for images ``x`` in [0, 1]."""
        return self.backbone(self.norm(x))
