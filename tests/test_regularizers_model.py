"""Parameter- and architecture-level regularizers: L1, Parseval, dropout, DropConnect, noise, stochastic depth."""

from __future__ import annotations

import lightning as L
import pytest
import timm
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from timm.layers import DropPath

from robustlit.callbacks import DropConnect, Dropout, L1Penalty, NoiseInjection, Parseval, StochasticDepth
from robustlit.callbacks.parameter_penalties import layer_weights
from robustlit.losses import orthogonality_penalty
from tests.regularizer_nets import PlainTinyNet, TinyNet, batch, loader, trainer


def test_l1_penalty_is_a_loss_term_on_robust_modules():
    callback = L1Penalty(weight=0.01)
    model = TinyNet().eval()
    callback.setup(None, model, "fit")
    x, y = batch()
    l1 = model.net[0].weight.abs().sum() + model.net[5].weight.abs().sum()  # conv and linear, no biases or BN
    torch.testing.assert_close(model.robust_step([x, y], 0)["loss"], F.cross_entropy(model(x), y) + 0.01 * l1)


class _GradRecorder(L.Callback):
    def __init__(self):
        self.grads = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads = [p.grad.detach().clone() for p in pl_module.parameters()]


def test_l1_penalty_adds_its_subgradient_on_a_plain_module():
    recorder, plain_recorder = _GradRecorder(), _GradRecorder()
    trainer([L1Penalty(weight=0.5), recorder], batches=1).fit(PlainTinyNet(), loader())
    trainer([plain_recorder], batches=1).fit(PlainTinyNet(), loader())
    model = PlainTinyNet()
    weights = {id(w) for w in layer_weights(model)}
    for parameter, with_l1, without in zip(model.parameters(), recorder.grads, plain_recorder.grads, strict=True):
        expected = without + 0.5 * parameter.detach().sign() if id(parameter) in weights else without
        torch.testing.assert_close(with_l1, expected)


def test_parseval_penalty_and_retraction_in_a_real_trainer():
    callback = Parseval(weight=1e-3, retraction=0.05)
    model = TinyNet().eval()
    callback.setup(None, model, "fit")
    x, y = batch()
    expected = F.cross_entropy(model(x), y) + 1e-3 * orthogonality_penalty(layer_weights(model))
    torch.testing.assert_close(model.robust_step([x, y], 0)["loss"], expected)
    callback.teardown(None, model, "fit")

    model = TinyNet()
    before = float(orthogonality_penalty(layer_weights(model)).detach())
    fit = trainer([Parseval(weight=0.0, retraction=0.05)], batches=2)
    model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), lr=0.0)  # only the retraction acts
    fit.fit(model, loader())
    assert float(orthogonality_penalty(layer_weights(model)).detach()) < before


def test_dropout_hooks_activations_in_training_only_and_keep_state_dict_keys():
    model = TinyNet().train()
    keys = list(model.state_dict())
    x, _ = batch(32)
    relu_out = []
    model.net[3].register_forward_pre_hook(lambda m, args: relu_out.append(args[0]))
    model(x)
    plain = relu_out[-1]
    callback = Dropout(p=0.5)
    callback.setup(None, model, "fit")
    model(x)
    dropped = relu_out[-1]
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2 * plain[kept])  # inverted dropout: survivors scaled by 1/(1 - p)
    assert float(kept.sum() / (plain != 0).sum()) == pytest.approx(0.5, abs=0.1)
    assert list(model.state_dict()) == keys
    model.eval()
    model(x)
    evaluated = relu_out[-1]
    callback.teardown(None, model, "fit")
    model(x)
    torch.testing.assert_close(evaluated, relu_out[-1])  # no dropout in eval mode


def test_dropconnect_recomputes_linear_layers_with_a_masked_weight():
    model = TinyNet().train()
    callback = DropConnect(p=0.3)
    callback.setup(None, model, "fit")
    x, _ = batch()
    features = model.net[:5](x)
    torch.manual_seed(0)
    out = model.net[5](features)
    torch.manual_seed(0)
    linear = model.net[5]
    mask = torch.rand_like(linear.weight) >= 0.3
    torch.testing.assert_close(out, F.linear(features, linear.weight * mask / 0.7, linear.bias))
    model.eval()
    torch.testing.assert_close(model.net[5](features), F.linear(features, linear.weight, linear.bias))
    with pytest.raises(MisconfigurationException, match="are not Linear or convolution layers"):
        DropConnect(layers=["net.2"]).setup(None, TinyNet(), "fit")


def test_noise_injection_on_activations_and_weights():
    model = TinyNet().train()
    x, _ = batch()
    with torch.no_grad():
        clean = model.net[:3](x)
    callback = NoiseInjection(activation_std=0.2, weight_std=0.0)
    callback.setup(None, model, "fit")
    with torch.no_grad():
        noisy = model.net[:3](x)
    assert (noisy - clean).std().item() == pytest.approx(0.2, rel=0.1)
    callback.teardown(None, model, "fit")

    weights = NoiseInjection(activation_std=0.0, weight_std=0.1)
    weights.setup(None, model, "fit")
    linear = model.net[5]
    features = torch.rand(4, 16)
    torch.manual_seed(0)
    out = linear(features)
    torch.manual_seed(0)
    noisy_weight = linear.weight + 0.1 * linear.weight.std() * torch.randn_like(linear.weight)
    torch.testing.assert_close(out, F.linear(features, noisy_weight, linear.bias))
    model.eval()
    torch.testing.assert_close(linear(features), F.linear(features, linear.weight, linear.bias))


def test_layer_hooks_need_layers_they_can_find():
    with pytest.raises(MisconfigurationException, match="found no ReLU"):
        Dropout().setup(None, torch.nn.Sequential(torch.nn.Linear(2, 2)), "fit")
    with pytest.raises(MisconfigurationException, match=r"layers \['nope'\] are not submodules"):
        Dropout(layers=["nope"]).setup(None, TinyNet(), "fit")


class _ResidualNet(L.LightningModule):
    """Three residual blocks with timm DropPath on their branches, as timm models build them."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 8))
        self.branches = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
        self.drops = torch.nn.ModuleList(DropPath(0.05) for _ in range(3))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        h = self.stem(x)
        for branch, drop in zip(self.branches, self.drops, strict=True):
            h = h + drop(branch(h))
        return self.head(h)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_timm_models_get_drop_path_modules_for_a_positive_rate():
    from robustlit.callbacks.stochastic_depth import drop_path_modules

    assert drop_path_modules(timm.create_model("resnet10t", num_classes=3, drop_path_rate=0.1))
    assert not drop_path_modules(timm.create_model("resnet10t", num_classes=3, drop_path_rate=0.0))


def test_stochastic_depth_schedules_timm_drop_path_rates():
    model = _ResidualNet()
    callback = StochasticDepth(drop_path_rate=0.2, schedule="linear")
    rates = []
    probe = L.Callback()
    probe.on_train_batch_end = lambda *args: rates.append([m.drop_prob for m in callback._blocks])
    trainer([callback, probe], batches=2, epochs=2).fit(model, loader())
    blocks = [m for m in model.modules() if isinstance(m, DropPath)]
    n = len(blocks)
    assert n == 3
    for step, step_rates in enumerate(rates):  # rate of block i = 0.2 · i/(n − 1) · step/4
        expected = [0.2 * i / (n - 1) * step / 4 for i in range(n)]
        assert step_rates == pytest.approx(expected)
    with pytest.raises(MisconfigurationException, match="model=timm model.drop_path_rate=0.1"):
        StochasticDepth().setup(None, TinyNet(), "fit")


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: L1Penalty(weight=-1), "weight >= 0"),
        (lambda: Parseval(weight=0, retraction=0), "does nothing"),
        (lambda: Parseval(retraction=-1), "retraction >= 0"),
        (lambda: Dropout(p=1.0), "0 <= p < 1"),
        (lambda: DropConnect(p=-0.1), "0 <= p < 1"),
        (lambda: NoiseInjection(activation_std=0, weight_std=0), "does nothing"),
        (lambda: StochasticDepth(schedule="cosine"), "choose one of constant, linear"),
        (lambda: StochasticDepth(drop_path_rate=1.0), "0 <= drop_path_rate < 1"),
    ],
)
def test_model_regularizers_validate_arguments(factory, message):
    with pytest.raises(MisconfigurationException, match=message):
        factory()
