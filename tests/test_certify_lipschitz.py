"""Conv operator norms against the SVD of the explicit conv matrix, global Lipschitz bounds and margin radii."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlit.certify import conv_norm_upper_bound, conv_operator_norm, lipschitz_bound, lipschitz_certify
from robustlit.models.cifar import PreActBlock

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _conv_matrix(weight: torch.Tensor, shape: tuple[int, int, int], **options) -> torch.Tensor:
    """The explicit matrix of ``x ↦ conv2d(x, weight)`` on inputs of ``shape``, one column per basis image."""
    size = math.prod(shape)
    basis = torch.eye(size, dtype=torch.float64).view(size, *shape)
    return F.conv2d(basis, weight.double(), **options).flatten(1).T


@pytest.mark.parametrize(
    ("options", "shape"),
    [({"padding": 1}, (2, 5, 5)), ({"stride": 2, "padding": 1}, (2, 6, 6)), ({"dilation": 2, "padding": 2}, (2, 5, 4)),
     ({"groups": 2, "padding": 0}, (2, 5, 5))],
)
def test_conv_operator_norm_matches_the_svd_of_the_explicit_conv_matrix(options, shape):
    torch.manual_seed(0)
    groups = options.get("groups", 1)
    weight = torch.randn(4, 2 // groups, 3, 3)
    exact = float(torch.linalg.svdvals(_conv_matrix(weight, shape, **options))[0])
    estimate, _ = conv_operator_norm(weight.double(), shape, iterations=500, **options)
    assert float(estimate) == pytest.approx(exact, rel=1e-6)
    bound = conv_norm_upper_bound(weight, shape[1:], options.get("padding", 0), options.get("dilation", 1), groups)
    assert bound >= exact - 1e-9
    if options.get("stride", 1) == 1:
        assert bound <= 1.5 * exact  # a usable bound (strided convolutions get the stride-1 bound, looser)
    # the reshaped-kernel norm is a different number
    reshaped = float(torch.linalg.matrix_norm(weight.flatten(1), ord=2))
    assert abs(reshaped - exact) > 0.05 * exact


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.block = PreActBlock(3, 4, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        return self.head(self.pool(self.block(self.stem(x))).flatten(1))


def test_lipschitz_bound_covers_observed_slopes_and_is_exact_for_one_layer():
    torch.manual_seed(1)
    net = _Net().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.uniform_(0.1, 0.5)  # BN scales > 1 must enter the bound
    bound = lipschitz_bound(net, (1, 8, 8))
    x = torch.rand(256, 1, 8, 8)
    x2 = x + 0.01 * torch.randn_like(x)
    with torch.no_grad():
        slopes = (net(x) - net(x2)).norm(dim=1) / (x - x2).flatten(1).norm(dim=1)
    assert float(slopes.max()) <= bound
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    assert lipschitz_bound(linear, (1, 4, 4)) == pytest.approx(float(torch.linalg.matrix_norm(linear[1].weight, 2)))
    bn = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    with torch.no_grad():
        bn[1].running_var.fill_(0.25 - bn[1].eps)
    assert lipschitz_bound(bn, (4,)) == pytest.approx(2 * float(torch.linalg.matrix_norm(bn[0].weight, 2)), rel=1e-5)
    assert lipschitz_bound(nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), (1, 4, 4)) == pytest.approx(0.5)


def test_lipschitz_certificate_is_margin_over_root_two_l():
    net = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    x = torch.tensor([[1.0, 0.5]])
    result = lipschitz_certify(net, x)
    assert (result.method, result.norm, result.guarantee) == ("lipschitz", "L2", "deterministic")
    assert result.prediction.tolist() == [0]
    assert float(result.radius) == pytest.approx(1.5 / (math.sqrt(2) * 2.0))
