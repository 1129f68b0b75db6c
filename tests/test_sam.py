"""SAM and ASAM: the Lightning update equals a hand-computed two-step update; refused setups fail loudly."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlit.callbacks import ASAM, SAM, Mixup
from robustlit.module import RobustModule, StepContext
from robustlit.optim import sam_perturbation

LR = 0.5


def _batch(n: int = 8):
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 4, generator=generator), torch.randint(0, 3, (n,), generator=generator)


class Plain(L.LightningModule):
    """A plain LightningModule with a BatchNorm layer; its loss accepts soft targets."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes = 3
        self.net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class Robust(RobustModule, Plain):
    """The same network opted in to the RobustModule protocol."""

    def training_step(self, batch, batch_idx):
        return self.robust_step(batch, batch_idx)


def _fit(model, callbacks, x, y, precision="32-true", plugins=None, accumulate=1):
    trainer = L.Trainer(
        callbacks=callbacks, max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, precision=None if plugins else precision,
        plugins=plugins, accumulate_grad_batches=accumulate,
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=len(x)))
    return model


def _hand_sam(model: nn.Module, x, y, rho: float, adaptive: bool, autocast: bool = False) -> dict[str, torch.Tensor]:
    """Two-step SAM by hand: e = ρ·T²g/‖Tg‖ at w, gradient at w + e, SGD step from w."""
    model = copy.deepcopy(model).train()
    params = dict(model.named_parameters())

    def grads():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x).float(), y)
        return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))

    first = grads()
    scale = {
        n: (p.detach().abs() + 0.01) if adaptive and "weight" in n else torch.ones_like(p) for n, p in params.items()
    }
    norm = torch.sqrt(sum(((scale[n] * g) ** 2).sum() for n, g in first.items()))
    with torch.no_grad():
        start = {n: p.clone() for n, p in params.items()}
        for n, p in params.items():
            p.add_(rho * scale[n] ** 2 * first[n] / norm)
    second = grads()
    return {n: start[n] - LR * second[n] for n in params}


@pytest.mark.parametrize("module", [Plain, Robust])
@pytest.mark.parametrize(("callback", "adaptive"), [(SAM(rho=0.3), False), (ASAM(rho=0.7), True)])
def test_update_equals_hand_computed_two_step_update(module, callback, adaptive):
    x, y = _batch()
    model = module()
    expected = _hand_sam(model, x, y, callback.rho, adaptive)
    bn_before = model.net[1].running_mean.clone()
    _fit(model, [callback], x, y)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), expected[name], rtol=1e-5, atol=1e-6)
    # running statistics moved once (one batch), not twice
    reference = Plain()
    with torch.no_grad():
        reference.train()(x)
    torch.testing.assert_close(model.net[1].running_mean, reference.net[1].running_mean)
    assert not torch.equal(model.net[1].running_mean, bn_before)


def test_sam_differs_from_plain_sgd():
    x, y = _batch()
    sgd = _fit(Plain(), [], x, y)
    sam = _fit(Plain(), [SAM(rho=0.3)], x, y)
    assert not torch.allclose(sgd.net[0].weight, sam.net[0].weight)


def test_second_pass_reuses_the_mixed_batch_and_draws_once():
    x, y = _batch()
    mixup = Mixup(mixup_alpha=1.0, num_classes=3, seed=5)
    twin = Mixup(mixup_alpha=1.0, num_classes=3, seed=5)
    model = Robust()
    twin.setup(None, nn.Identity(), "fit")
    mixed_x, mixed_y = twin.transform(StepContext(module=model, batch_idx=0, inputs=x, targets=y))
    reference = copy.deepcopy(model).train()
    params = dict(reference.named_parameters())

    def grads():
        loss = -(mixed_y * F.log_softmax(reference(mixed_x), 1)).sum(1).mean()
        return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))

    first = grads()
    norm = torch.sqrt(sum((g**2).sum() for g in first.values()))
    with torch.no_grad():
        start = {n: p.clone() for n, p in params.items()}
        for n, p in params.items():
            p.add_(0.3 * first[n] / norm)
    second = grads()
    _fit(model, [mixup, SAM(rho=0.3)], x, y)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), start[name] - LR * second[name], rtol=1e-5, atol=1e-6)
    assert mixup.state_dict()["rng"] == twin.state_dict()["rng"]  # λ drawn once, not again for the second pass


def test_bf16_mixed_goes_through_the_precision_plugin():
    x, y = _batch()
    model = Plain()
    expected = _hand_sam(model, x, y, 0.3, adaptive=False, autocast=True)
    _fit(model, [SAM(rho=0.3)], x, y, precision="bf16-mixed")
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), expected[name], rtol=2e-2, atol=2e-2)


def test_fp16_mixed_and_accumulation_are_refused():
    x, y = _batch()
    scaler = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(MisconfigurationException, match="SAM does not support precision=16-mixed; use bf16-mixed"):
        _fit(Plain(), [SAM()], x, y, plugins=[scaler])
    with pytest.raises(MisconfigurationException, match="ASAM does not support accumulate_grad_batches=2"):
        _fit(Plain(), [ASAM()], x, y, accumulate=2)


@pytest.mark.parametrize(("factory", "message"), [(lambda: SAM(rho=0), "rho > 0"), (lambda: ASAM(eta=-1), "eta >= 0")])
def test_arguments_are_validated(factory, message):
    with pytest.raises(MisconfigurationException, match=message):
        factory()


def test_perturbation_of_parameters_without_gradients_is_empty():
    assert sam_perturbation([("w", nn.Parameter(torch.ones(2)))], rho=0.1) == {}
