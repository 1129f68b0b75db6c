"""Run a model in reduced precision for attacks, keeping the perturbation and the loss in fp32."""

from __future__ import annotations

import torch
from torch import Tensor, nn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class AutocastModel(nn.Module):
    """Wrap ``model`` so its forward runs under autocast and returns fp32 logits.

    Attacks keep their inputs, perturbation and loss in fp32: only the wrapped model's
    arithmetic is reduced. bf16 is the safe choice on recent GPUs and on CPU; fp16 may overflow
    in models trained without it. ``channels_last`` speeds up convolutions on GPUs with tensor cores.
    Graph-captured models (``torch.export`` programs) ignore autocast.

    Args:
        model: Any module mapping images to logits.
        precision: ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"``.
        channels_last: Feed inputs in channels-last memory format.

    Example:
        >>> import torch
        >>> net = AutocastModel(torch.nn.Conv2d(3, 2, 3), precision="bf16")
        >>> net(torch.rand(1, 3, 5, 5)).dtype
        torch.float32
    """

    def __init__(self, model: nn.Module, precision: str = "bf16", channels_last: bool = False) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not supported; choose one of {', '.join(PRECISIONS)}")
        self.model = model
        self.dtype = PRECISIONS[precision]
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        """Logits in fp32."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return self.model(x).float()
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.model(x).float()


def with_precision(model: nn.Module, precision: str = "fp32", channels_last: bool = False) -> nn.Module:
    """``model`` itself for plain fp32, else an :class:`AutocastModel` around it.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> with_precision(net) is net
        True
    """
    if precision == "fp32" and not channels_last:
        return model
    return AutocastModel(model, precision=precision, channels_last=channels_last)
