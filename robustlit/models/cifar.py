"""CIFAR-style classifiers for 32x32 inputs: SmallCNN, PreActResNet-18 and WideResNet.

All take images in [0, 1], start with a :class:`~robustlit.models.layers.Normalize` named
``norm`` and end with global pooling, so they also run on other input sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from robustlit.models.layers import Normalize

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2471, 0.2435, 0.2616)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        # Not in-place: double backward (Jacobian and gradient-alignment penalties) needs the input.
        nn.ReLU(),
    )


class SmallCNN(nn.Module):
    """A five-conv VGG-style network, the architecture of the reference ``smallcnn_*`` checkpoints.

    Layout (``width=32`` gives channels 32, 64, 128, 128, 256 and the exact state_dict keys of
    ``shared/models/smallcnn_*.state_dict.pt``): ``norm``; ``features`` = conv block, conv block,
    max-pool, conv block, max-pool, conv block, max-pool, conv block, global max-pool (indices 0-8,
    each conv block a Sequential of 3x3 conv without bias, BatchNorm, ReLU); ``fc``.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        width: Channels of the first block; later blocks use 2, 4, 4 and 8 times as many.
        mean: Per-channel input mean for the built-in normalization.
        std: Per-channel input standard deviation for the built-in normalization.

    Example:
        >>> model = SmallCNN(num_classes=10, width=8)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 32,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r} must be a positive integer")
        c1, c2, c3, c4, c5 = width, 2 * width, 4 * width, 4 * width, 8 * width
        self.norm = Normalize(mean, std, channels=in_channels)
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, c1),
            _conv_bn_relu(c1, c2),
            nn.MaxPool2d(2),
            _conv_bn_relu(c2, c3),
            nn.MaxPool2d(2),
            _conv_bn_relu(c3, c4),
            nn.MaxPool2d(2),
            _conv_bn_relu(c4, c5),
            nn.AdaptiveMaxPool2d(1),
        )
        self.fc = nn.Linear(c5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)`` for images ``x`` in [0, 1]."""
        return self.fc(torch.flatten(self.features(self.norm(x)), 1))


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv twice, with a 1x1 conv shortcut when the shape changes.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution.

    Example:
        >>> PreActBlock(16, 32, stride=2)(torch.rand(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = F.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input, as in the paper.
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 with a 3x3 CIFAR stem, the usual adversarial-training baseline.

    Reference: He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        mean: Per-channel input mean for the built-in normalization.
        std: Per-channel input standard deviation for the built-in normalization.

    Example:
        >>> PreActResNet18(num_classes=10)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        self.norm = Normalize(mean, std, channels=in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 128, stride=2)
        self.layer3 = self._stage(128, 256, stride=2)
        self.layer4 = self._stage(256, 512, stride=2)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)`` for images ``x`` in [0, 1]."""
        out = self.conv1(self.norm(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.linear(torch.flatten(out, 1))


class WideBasicBlock(nn.Module):
    """Wide ResNet basic block (pre-activation, optional dropout between the convolutions).

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution.
        dropout: Dropout probability between the two convolutions.

    Example:
        >>> WideBasicBlock(16, 32, stride=2)(torch.rand(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = F.relu(self.bn1(x))
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.dropout(F.relu(self.bn2(self.conv1(out))))
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """Wide residual network WRN-depth-k; WRN-28-10 is the standard robust CIFAR benchmark model.

    Reference: Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.

    Args:
        depth: Total depth, ``6n + 4`` (16, 22, 28, 34, 40 ...).
        widen_factor: Channel multiplier ``k`` for the three stages (16k, 32k, 64k channels).
        dropout: Dropout probability inside each block.
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        mean: Per-channel input mean for the built-in normalization.
        std: Per-channel input standard deviation for the built-in normalization.

    Example:
        >>> model = WideResNet(depth=10, widen_factor=2, num_classes=10)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
        num_classes: int = 10,
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth={depth!r} must be 6n+4 with n >= 1 (e.g. 16, 22, 28, 34, 40)")
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor={widen_factor!r} must be a positive integer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.norm = Normalize(mean, std, channels=in_channels)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = self._stage(widths[0], widths[1], n, 1, dropout)
        self.block2 = self._stage(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._stage(widths[2], widths[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        # He-normal initialisation and zero linear bias, as in the authors' code.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        blocks = [WideBasicBlock(in_planes, planes, stride, dropout)]
        blocks += [WideBasicBlock(planes, planes, 1, dropout) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)`` for images ``x`` in [0, 1]."""
        out = self.block3(self.block2(self.block1(self.conv1(self.norm(x)))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.fc(torch.flatten(out, 1))
