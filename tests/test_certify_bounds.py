"""IBP, CROWN-IBP and CROWN bounds: exact cases, soundness against random and PGD points, elision, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import jacrev

from robustlit.attacks import pgd
from robustlit.certify import (
    BoundGraph,
    UnsupportedLayerError,
    certify_linf,
    crown_bounds,
    input_bounds,
    interval_bounds,
    margin_lower_bounds,
    margin_spec,
    verified,
    verified_error,
)
from robustlit.models import SmallCNN
from robustlit.models.cifar import PreActBlock
from tests.nets import small_cnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")



class Residual(nn.Module):
    """Conv stem, a pre-activation residual block with a projection shortcut, average pooling, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = PreActBlock(4, 6, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def _randomize_batchnorm(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "maxpool_cnn": _randomize_batchnorm(small_cnn(max_pool=True, classes=5)),
        "residual": _randomize_batchnorm(Residual()),
        "smallcnn": _randomize_batchnorm(SmallCNN(num_classes=5, width=2)),
    }


def test_ibp_on_a_difference_of_inputs_gives_minus_two_to_two():
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -1.0]]))
    for bounds in (interval_bounds(net, torch.zeros(1, 2), 1.0, domain=None),
                   crown_bounds(net, torch.zeros(1, 2), 1.0, domain=None)):
        assert bounds.lower.tolist() == [[-2.0]] and bounds.upper.tolist() == [[2.0]]


@pytest.mark.parametrize("name", ["maxpool_cnn", "residual", "smallcnn"])
def test_zero_radius_gives_the_models_output(models, name):
    model = models[name]
    x = torch.rand(3, 3, 8, 8)
    logits = model(x)
    for bounds in (interval_bounds(model, x, 0.0), crown_bounds(model, x, 0.0)):
        torch.testing.assert_close(bounds.lower, logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(bounds.upper, logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["maxpool_cnn", "residual"])
def test_ibp_bounds_are_nested_in_eps(models, name):
    x = torch.rand(2, 3, 8, 8)
    previous = None
    for eps in (0.0, 0.005, 0.02, 0.05):
        bounds = interval_bounds(models[name], x, eps)
        assert bool((bounds.lower <= bounds.upper).all())
        if previous is not None:
            assert bool((bounds.lower <= previous.lower + 1e-6).all() and (bounds.upper >= previous.upper - 1e-6).all())
        previous = bounds


def test_crown_is_exact_on_a_purely_linear_network():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(12, 4), nn.Linear(4, 3))
    _randomize_batchnorm(net)
    x, eps = torch.rand(2, 2, 8, 8), 0.1
    jacobian = torch.stack([jacrev(lambda v: net(v[None])[0])(x[i]).flatten(1) for i in range(2)])  # (N, K, D)
    exact_lower = net(x) - eps * jacobian.abs().sum(-1)
    exact_upper = net(x) + eps * jacobian.abs().sum(-1)
    for intermediate in ("ibp", "crown"):
        bounds = crown_bounds(net, x, eps, domain=None, intermediate=intermediate)
        torch.testing.assert_close(bounds.lower, exact_lower, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(bounds.upper, exact_upper, atol=1e-4, rtol=1e-5)
    ibp = interval_bounds(net, x, eps, domain=None)
    assert bool(((ibp.upper - ibp.lower) > (exact_upper - exact_lower) + 1e-4).any())


def test_elided_single_layer_margins_are_exact():
    torch.manual_seed(2)
    net = nn.Linear(5, 4)
    x, y, eps = torch.rand(6, 5), torch.tensor([0, 1, 2, 3, 0, 1]), 0.05
    w, b = net.weight, net.bias
    diff_w = w[y][:, None, :] - w[None, :, :]  # (N, K, D): w_y - w_i
    margin = (diff_w * x[:, None, :]).sum(-1) + (b[y][:, None] - b[None, :])
    exact = margin - eps * diff_w.abs().sum(-1)
    got = interval_bounds(net, x, eps, spec=margin_spec(y, 4), domain=None).lower
    torch.testing.assert_close(got, exact, atol=1e-5, rtol=0)
    # elision beats multiplying the output interval by the spec
    plain = interval_bounds(net, x, eps, domain=None)
    spec = margin_spec(y, 4)
    naive = (spec.clamp(min=0) * plain.lower[:, None] + spec.clamp(max=0) * plain.upper[:, None]).sum(-1)
    assert bool((got >= naive - 1e-6).all()) and bool((got > naive + 1e-4).any())


@pytest.mark.parametrize("name", ["maxpool_cnn", "residual", "smallcnn"])
def test_random_and_pgd_points_stay_within_the_bounds(models, name):
    model = models[name]
    torch.manual_seed(3)
    x, eps = torch.rand(4, 3, 8, 8), 0.03
    y = model(x).argmax(1)
    methods = ["ibp", "crown-ibp"] + (["crown"] if name == "residual" else [])
    logit_bounds = [interval_bounds(model, x, eps), crown_bounds(model, x, eps)]
    if "crown" in methods:
        logit_bounds.append(crown_bounds(model, x, eps, intermediate="crown"))
    margins = margin_lower_bounds(model, x, y, eps, methods)
    noise = (torch.rand(64, *x.shape) * 2 - 1) * eps
    samples = [(x + noise).clamp(0, 1).flatten(0, 1)]
    samples += [pgd(model, x, y, eps=eps, steps=10, loss=loss, seed=s, sample_ids=torch.arange(4)) for s, loss in
                enumerate(("ce", "margin"))]
    for sample in samples:
        repeats = sample.shape[0] // x.shape[0]
        assert bool(((sample - x.repeat(repeats, 1, 1, 1)).abs() <= eps + 1e-6).all())
        logits = model(sample).view(repeats, *x.shape[:1], -1)
        for bounds in logit_bounds:
            assert bool((logits >= bounds.lower - 1e-4).all() and (logits <= bounds.upper + 1e-4).all())
        true_margin = logits.gather(2, y[None, :, None].expand(repeats, -1, 1)) - logits
        for method, lower in margins.items():
            assert bool((true_margin >= lower - 1e-4).all()), method


def test_crown_ibp_and_crown_are_tighter_than_ibp_on_a_residual_network(models):
    x, eps = torch.rand(3, 3, 8, 8), 0.02
    ibp = interval_bounds(models["residual"], x, eps)
    crown_ibp = crown_bounds(models["residual"], x, eps)
    crown = crown_bounds(models["residual"], x, eps, intermediate="crown")
    width = [float((b.upper - b.lower).mean().detach()) for b in (ibp, crown_ibp, crown)]
    assert width[0] > width[1] >= width[2] - 1e-6


def test_training_mode_batchnorm_uses_the_clean_batch_statistics_and_leaves_running_stats_alone():
    model = small_cnn(classes=4).train()
    x = torch.rand(8, 3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bounds = interval_bounds(model, x, 0.0)
    after = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x)  # training forward: batch statistics
    torch.testing.assert_close(bounds.lower, logits, atol=1e-5, rtol=0)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_verified_error_and_certificates_on_a_linear_model():
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        net.bias.copy_(torch.tensor([-0.5, 0.5]))
    # the margin of class 0 is 2·(x0 − 0.5) and IBP shrinks it by exactly 2·eps
    x = torch.tensor([[0.55, 0.5], [0.8, 0.5], [0.45, 0.5], [0.2, 0.5]])
    y = torch.tensor([0, 0, 1, 1])
    margins = margin_lower_bounds(net, x, y, 0.1, ["ibp"])["ibp"]
    torch.testing.assert_close(margins.sum(1), torch.tensor([-0.1, 0.4, -0.1, 0.4]), atol=1e-5, rtol=0)
    assert verified(margins, y).tolist() == [False, True, False, True]
    assert verified_error(net, x, y, 0.1) == 0.5
    result = certify_linf(net, x, [0.01, 0.1, 0.2])
    assert result.radius.tolist() == [0.01, 0.2, 0.01, 0.2]
    assert result.prediction.tolist() == [0, 0, 1, 1]


def test_input_box_is_clipped_to_the_image_domain():
    bounds = input_bounds(torch.tensor([[0.02, 0.99]]), 0.05)
    assert bounds.lower.tolist()[0] == pytest.approx([0.0, 0.94])
    assert bounds.upper.tolist()[0] == pytest.approx([0.07, 1.0])
    outside = input_bounds(torch.tensor([[-0.2]]), 0.05)  # the box still contains an input outside [0, 1]
    assert outside.lower.tolist() == [[pytest.approx(-0.2)]] and outside.upper.tolist() == [[0.0]]


def test_unsupported_layers_raise_an_error_naming_the_layer():
    with pytest.raises(UnsupportedLayerError, match=r"layer '2' \(Tanh\)"):
        BoundGraph.of(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)))

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    with pytest.raises(UnsupportedLayerError, match="'mul'.*two perturbed"):
        BoundGraph.of(Square())

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedLayerError, match="cannot trace Branchy"):
        BoundGraph.of(Branchy())
    scripted = nn.Sequential(torch.jit.script(nn.Linear(2, 2)))
    with pytest.raises(UnsupportedLayerError, match="cannot bound the TorchScript module '0'"):
        BoundGraph.of(scripted)
