"""Run a model in reduced precision for attacks, keeping the perturbation and the loss in fp32."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlit.attacks._common import eval_mode

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


def accepts_channels_last(model: nn.Module, x: Tensor) -> bool:
    """Whether ``x`` is an image batch that ``model`` can take in channels-last memory format.

    Convolutions run several times faster on channels-last inputs on CPUs with oneDNN and on GPUs
    with tensor cores. A model that calls ``.view`` on its input refuses them; one trial forward pass
    on a single sample (in eval mode, without gradients) finds out.

    Example:
        >>> import torch
        >>> accepts_channels_last(torch.nn.Conv2d(3, 2, 3), torch.rand(2, 3, 5, 5))
        True
        >>> class Flat(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x.view(x.shape[0], -1)
        >>> accepts_channels_last(Flat(), torch.rand(2, 3, 5, 5))
        False
    """
    if x.ndim != 4 or x.shape[0] == 0:
        return False
    with eval_mode(model), torch.no_grad():
        try:
            model(x[:1].contiguous(memory_format=torch.channels_last))
        except RuntimeError:
            return False
    return True


def misclassified(model: nn.Module, logits: Tensor, inputs: Tensor, labels: Tensor) -> Tensor:
    """Which rows of ``logits`` are misclassified, as the model decides in its own precision.

    An :class:`AutocastModel` in bf16 or fp16 rounds its logits, so a point can sit just across the
    decision boundary for it and not for the model it wraps. Attacks stop working on a point once it is
    misclassified; for a reduced-precision model the rows that look misclassified are checked again
    with one forward pass of the wrapped model, so the attack keeps going on the ones that are not.

    Args:
        model: The model the attack queries (possibly an :class:`AutocastModel`).
        logits: Its logits for ``inputs``.
        inputs: The points the logits belong to.
        labels: True labels.

    Returns:
        A boolean tensor, one entry per row.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(1, 2, bias=False)
        >>> _ = net.weight.data.copy_(torch.tensor([[1.0], [1.0 + 2**-12]]))  # a gap that bf16 rounds away
        >>> x, y = torch.ones(1, 1), torch.tensor([1])
        >>> fast = AutocastModel(net, "bf16")
        >>> bool(fast(x).argmax(1) != y), bool(misclassified(fast, fast(x), x, y))
        (True, False)
    """
    wrong = logits.argmax(dim=1) != labels
    if not isinstance(model, AutocastModel) or model.dtype is None or not wrong.any():
        return wrong
    suspects = wrong.nonzero().squeeze(1)
    points = inputs[suspects]
    if model.channels_last and points.ndim == 4:
        points = points.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        wrong[suspects] = model.model(points).argmax(dim=1) != labels[suspects]
    return wrong
