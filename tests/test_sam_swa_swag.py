"""Weight averaging and schedules: SWA against torch.optim.swa_utils, EMA, SWAG moments and sampling, warm-up."""

from __future__ import annotations

import copy
import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, TensorDataset

from robustlit.callbacks import SAM, SWA, SWAG
from robustlit.errors import ConfigError
from robustlit.module import RobustClassifier
from robustlit.optim import SWAGPosterior, WarmupCosine, warmup_cosine


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(24, 4, generator=generator), torch.randint(0, 3, (24,), generator=generator))


class Net(L.LightningModule):
    def __init__(self, batchnorm: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        middle = nn.BatchNorm1d(6) if batchnorm else nn.Identity()
        self.net = nn.Sequential(nn.Linear(4, 6), middle, nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def test_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


class Recorder(L.Callback):
    """Snapshots of the parameters at epoch starts, epoch ends and after each step."""

    def __init__(self) -> None:
        self.epoch_starts, self.epoch_ends, self.steps = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_starts.append(copy.deepcopy(pl_module.net))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_ends.append(parameters_to_vector(pl_module.parameters()).detach().clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(copy.deepcopy(pl_module.net))


def _fit(model, callbacks, epochs: int) -> L.Trainer:
    trainer = L.Trainer(callbacks=callbacks, max_epochs=epochs, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        deterministic=True)
    trainer.fit(model, DataLoader(_data(), batch_size=8))
    return trainer


def test_swa_matches_torch_swa_utils_including_batchnorm():
    model, recorder = Net(batchnorm=True), Recorder()
    # Recorder first: it sees each epoch's starting weights before SWA averages them
    _fit(model, [recorder, SWA(swa_lrs=0.1, swa_epoch_start=2, device=None)], epochs=4)
    averaged = AveragedModel(copy.deepcopy(recorder.epoch_starts[0]))
    for snapshot in recorder.epoch_starts[1:4]:  # epochs 1, 2, 3 (0-based) are SWA epochs
        averaged.update_parameters(snapshot)
    for got, expected in zip(model.net.parameters(), averaged.module.parameters(), strict=True):
        torch.testing.assert_close(got, expected)
    update_bn(DataLoader(_data(), batch_size=8), averaged.module)
    torch.testing.assert_close(model.net[1].running_mean, averaged.module[1].running_mean)
    torch.testing.assert_close(model.net[1].running_var, averaged.module[1].running_var)


def test_ema_matches_the_exponential_moving_average_of_the_steps():
    model, recorder = Net(), Recorder()
    ema = WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(decay=0.8), use_buffers=True)
    _fit(model, [recorder, ema], epochs=1)
    expected = [p.detach().clone() for p in recorder.steps[0].parameters()]
    for snapshot in recorder.steps[1:]:
        expected = [0.8 * e + 0.2 * p.detach() for e, p in zip(expected, snapshot.parameters(), strict=True)]
    for got, want in zip(model.net.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_swag_moments_match_a_hand_computation():
    model, recorder = Net(), Recorder()
    swag = SWAG(start_epoch=1, max_rank=2)
    _fit(model, [recorder, swag], epochs=4)
    thetas = torch.stack(recorder.epoch_ends[1:])  # epochs 1..3
    mean = thetas.mean(0)
    torch.testing.assert_close(swag.posterior.mean, mean)
    torch.testing.assert_close(swag.posterior.sq_mean, (thetas**2).mean(0))
    running = [thetas[: i + 1].mean(0) for i in range(3)]
    deviations = torch.stack([thetas[i] - running[i] for i in (1, 2)])  # the last K = 2 columns
    torch.testing.assert_close(swag.posterior.deviations, deviations)
    assert swag.posterior.n == 3
    torch.testing.assert_close(parameters_to_vector(model.parameters()), mean)  # the model ends at the SWA mean


def test_swag_samples_follow_the_diagonal_plus_low_rank_formula():
    posterior = SWAGPosterior(3, max_rank=3)
    thetas = torch.tensor([[1.0, 2.0, 0.0], [2.0, 0.0, 1.0], [4.0, 1.0, 1.0], [3.0, 3.0, 2.0]])
    for theta in thetas:
        posterior.collect(theta)
    draws = torch.randn(3, generator=torch.Generator().manual_seed(5)), None
    generator = torch.Generator().manual_seed(5)
    z1 = torch.randn(3, generator=generator)
    z2 = torch.randn(3, generator=generator)
    variance = (thetas**2).mean(0) - thetas.mean(0) ** 2
    running = torch.cumsum(thetas, 0) / torch.arange(1, 5)[:, None]
    deviations = (thetas - running)[1:]
    expected = thetas.mean(0) + math.sqrt(0.5) * (variance.sqrt() * z1 + deviations.T @ z2 / math.sqrt(2))
    torch.testing.assert_close(posterior.sample(torch.Generator().manual_seed(5)), expected)
    diagonal = posterior.sample(torch.Generator().manual_seed(5), scale=1.0, diagonal=True)
    torch.testing.assert_close(diagonal, thetas.mean(0) + variance.sqrt() * draws[0])
    restored = SWAGPosterior(3)
    restored.load_state_dict(posterior.state_dict())
    torch.testing.assert_close(restored.sample(torch.Generator().manual_seed(1)),
                               posterior.sample(torch.Generator().manual_seed(1)))


def test_swag_test_outputs_are_the_average_of_sampled_models():
    model = Net()
    swag = SWAG(start_epoch=0, samples=3, seed=7)
    trainer = _fit(model, [swag], epochs=3)
    seen = []

    class Capture(L.Callback):
        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            with torch.inference_mode(False), torch.enable_grad():  # as the suites call the model
                x = batch[0].clone().requires_grad_(True)
                outputs = pl_module(x)
                outputs.sum().backward()  # differentiable through the sampled models, as attacks need
                seen.append((x.detach(), outputs.detach()))

    trainer = L.Trainer(callbacks=[swag, Capture()], accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.test(model, DataLoader(_data(), batch_size=12), verbose=False)
    generator = torch.Generator().manual_seed(7)
    members = []
    for _ in range(3):
        member = copy.deepcopy(model.net)
        vector_to_parameters(swag.posterior.sample(generator), member.parameters())
        members.append(member)
    x, outputs = seen[0]
    expected = torch.stack([member(x).softmax(1) for member in members]).mean(0).log()
    torch.testing.assert_close(outputs, expected)
    assert not torch.allclose(model(x), expected)  # the hook is gone after the test loop


def test_warmup_cosine_follows_its_formula_and_drives_the_classifier():
    schedule = WarmupCosine(total_steps=20, warmup_steps=4, start_factor=0.2, min_factor=0.1)
    assert schedule(0) == pytest.approx(0.2) and schedule(2) == pytest.approx(0.6) and schedule(4) == 1.0
    assert schedule(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert schedule(20) == pytest.approx(0.1) and schedule(30) == pytest.approx(0.1)
    classifier = RobustClassifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), num_classes=3,
                                  optimizer=partial(torch.optim.SGD, lr=1.0),
                                  scheduler=partial(warmup_cosine, warmup_fraction=0.25))
    trainer = _fit(classifier, [], epochs=2)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.lr_lambdas[0] == WarmupCosine(6, 2, 0.0, 0.0)  # 2 epochs x 3 batches, 25% warm-up
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="warmup_fraction"):
        warmup_cosine(trainer.optimizers[0], total_steps=10, warmup_fraction=1.5)


def test_sam_with_swa_leaves_the_batchnorm_epoch_alone():
    model, recorder = Net(batchnorm=True), Recorder()
    _fit(model, [recorder, SWA(swa_lrs=0.1, swa_epoch_start=2, device=None), SAM(rho=0.1)], epochs=3)
    averaged = AveragedModel(copy.deepcopy(recorder.epoch_starts[0]))
    for snapshot in recorder.epoch_starts[1:3]:
        averaged.update_parameters(snapshot)
    for got, expected in zip(model.net.parameters(), averaged.module.parameters(), strict=True):
        torch.testing.assert_close(got, expected)
