"""The RobustModule protocol, and the Mixup / AdversarialTraining / LabelSmoothing callbacks on it."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlit.callbacks import AdversarialTraining, LabelSmoothing, Mixup, mixup_batch
from robustlit.module import RobustClassifier, RobustModule, StepContext

EPS = 0.1


def _data(n: int = 32, classes: int = 3) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.rand(n, 1, 4, 4, generator=generator), torch.randint(0, classes, (n,), generator=generator)
    )


def _trainer(callbacks, batches: int = 2) -> L.Trainer:
    return L.Trainer(
        callbacks=callbacks,
        max_epochs=1,
        limit_train_batches=batches,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


class UserNet(RobustModule, L.LightningModule):
    """A user's own module: the only robustlit line is the RobustModule base."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.num_classes = classes
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, classes))
        self.seen_inputs: list[torch.Tensor] = []
        self.seen_targets: list[torch.Tensor] = []
        self.clean_inputs: list[torch.Tensor] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        self.clean_inputs.append(batch[0].detach().clone())
        return self.robust_step(batch, batch_idx)

    def robust_loss(self, logits, targets):
        self.seen_targets.append(targets.detach().clone())
        return super().robust_loss(logits, targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class PlainNet(L.LightningModule):
    """A module that never heard of robustlit; its loss accepts soft targets."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 3
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((x.detach().clone(), y.detach().clone()))
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_transforms_run_in_order_and_loss_terms_add_up():
    model = UserNet().eval()
    calls = []

    def first(ctx: StepContext):
        calls.append("first")
        return ctx.inputs * 0, ctx.targets

    def second(ctx: StepContext):
        calls.append("second")
        assert torch.count_nonzero(ctx.inputs) == 0  # saw the output of `first`
        return ctx.inputs, ctx.targets

    model.register_batch_transform("second", second, order=5)
    model.register_batch_transform("first", first, order=1)
    model.register_loss_term("two", lambda ctx: torch.tensor(2.0), weight=0.5)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    out = model.robust_step([x, y], 0)
    assert calls == ["first", "second"]
    expected = F.cross_entropy(model(torch.zeros_like(x)), y) + 1.0
    torch.testing.assert_close(out["loss"], expected)
    assert model.registered_names == ["first", "second", "two"]
    model.unregister("first")
    assert "first" not in model.registered_names


def test_loss_term_value_is_added_exactly():
    model = UserNet().eval()
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    plain = model.robust_step([x, y], 0)["loss"]
    model.register_loss_term("const", lambda ctx: torch.tensor(3.0), weight=2.0)
    torch.testing.assert_close(model.robust_step([x, y], 0)["loss"], plain + 6.0)


def test_duplicate_registration_is_refused():
    model = UserNet()
    model.register_batch_transform("a", lambda ctx: (ctx.inputs, ctx.targets))
    with pytest.raises(ValueError, match="already registered"):
        model.register_batch_transform("a", lambda ctx: (ctx.inputs, ctx.targets))


def test_user_module_with_mixup_and_adversarial_training_trains_on_perturbed_soft_batches():
    model = UserNet()
    _trainer([Mixup(mixup_alpha=1.0, seed=0), AdversarialTraining(eps=EPS, steps=3)]).fit(
        model, DataLoader(_data(), batch_size=8)
    )
    assert len(model.seen_targets) == 2
    for targets in model.seen_targets:
        assert targets.shape == (8, 3)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
        assert (targets.max(dim=1).values < 1).any()  # mixed, not one-hot
    assert model.registered_names == []  # teardown unregistered both callbacks


def test_adversarial_training_perturbs_within_eps_and_leaves_bn_and_grads_alone():
    torch.manual_seed(0)
    model = UserNet()
    callback = AdversarialTraining(eps=EPS, steps=5)
    model.register_batch_transform(callback.name, callback.transform, order=callback.order)
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    bn = model.net[2]
    before = bn.running_mean.clone()
    ctx = StepContext(module=model, batch_idx=0, inputs=x, targets=y)
    x_adv, y_out = callback.transform(ctx)
    assert torch.equal(bn.running_mean, before)  # the attack ran in eval mode
    assert int(bn.num_batches_tracked) == 0
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # mode restored
    delta = x_adv - x
    assert delta.abs().max() <= EPS + 1e-6 and delta.abs().max() > EPS / 2
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(y_out, y)
    model.eval()  # the attack maximizes the loss of the eval-mode model
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def test_plain_lightning_module_gets_mixup_through_the_batch():
    model = PlainNet()
    _trainer([Mixup(mixup_alpha=1.0, seed=1)]).fit(model, DataLoader(_data(), batch_size=8))
    x, y = model.seen[0]
    assert y.shape == (8, 3) and torch.allclose(y.sum(dim=1), torch.ones(8))


def test_plain_module_with_adversarial_training_sees_perturbed_inputs():
    data = _data()
    model = PlainNet()
    _trainer([AdversarialTraining(eps=EPS, steps=2)], batches=1).fit(model, DataLoader(data, batch_size=8))
    x, y = model.seen[0]
    delta = x - data.tensors[0][:8]
    assert 0 < delta.abs().max() <= EPS + 1e-6
    assert torch.equal(y, data.tensors[1][:8])


def test_plain_module_with_tuple_batches_gets_a_clear_error():
    def collate(items):
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    with pytest.raises(MisconfigurationException, match="cannot rewrite a tuple batch"):
        _trainer([Mixup()]).fit(PlainNet(), DataLoader(_data(), batch_size=8, collate_fn=collate))


def test_mixup_batch_formula():
    x = torch.tensor([[0.0], [1.0], [2.0]])
    y = torch.eye(3)
    mixed_x, mixed_y = mixup_batch(x, y, 0.3, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(mixed_x, torch.tensor([[1.4], [0.3], [1.3]]))
    torch.testing.assert_close(mixed_y[0], torch.tensor([0.3, 0.0, 0.7]))


def test_mixup_state_round_trips_so_resume_continues_the_sequence():
    model = UserNet()
    first = Mixup(mixup_alpha=0.4, seed=3)
    first.setup(None, model, "fit")
    ctx = StepContext(module=model, batch_idx=0, inputs=torch.rand(6, 1, 4, 4), targets=torch.arange(6) % 3)
    first.transform(ctx)
    state = first.state_dict()
    expected = first.transform(ctx)
    resumed = Mixup(mixup_alpha=0.4)
    resumed.load_state_dict(state)
    resumed.setup(None, UserNet(), "fit")
    got = resumed.transform(ctx)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


def test_label_smoothing_targets_and_order():
    model = UserNet()
    _trainer([LabelSmoothing(smoothing=0.3)], batches=1).fit(model, DataLoader(_data(), batch_size=8))
    targets = model.seen_targets[0]
    labels = _data().tensors[1][:8]
    assert torch.allclose(targets.gather(1, labels[:, None]).squeeze(1), torch.full((8,), 0.8))
    assert torch.allclose(targets.sum(1), torch.ones(8))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Mixup(mixup_alpha=0), "mixup_alpha > 0"),
        (lambda: Mixup(prob=2), "0 <= prob <= 1"),
        (lambda: AdversarialTraining(eps=-1), "eps > 0"),
        (lambda: AdversarialTraining(norm="L3"), "choose one of Linf, L2"),
        (lambda: AdversarialTraining(eps="8/0"), "fraction like 8/255"),
        (lambda: LabelSmoothing(smoothing=1.0), "0 <= smoothing < 1"),
    ],
)
def test_callbacks_validate_arguments_eagerly(factory, message):
    with pytest.raises((MisconfigurationException, ValueError), match=message):
        factory()


def test_mixup_without_class_count_is_refused():
    with pytest.raises(MisconfigurationException, match="number of classes"):
        Mixup().setup(None, nn.Linear(2, 2), "fit")


def test_robust_classifier_from_spec_trains_with_scheduler():
    from functools import partial

    model = RobustClassifier(
        {"arch": "smallcnn", "width": 4, "checkpoint": None},
        num_classes=3,
        in_channels=1,
        mean=(0.5,),
        std=(0.25,),
        optimizer=partial(torch.optim.SGD, lr=0.1),
        scheduler=partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1),
    )
    data = TensorDataset(torch.rand(16, 1, 8, 8), torch.randint(0, 3, (16,)))
    trainer = _trainer([], batches=2)
    trainer.fit(model, DataLoader(data, batch_size=8))
    assert trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 2
    assert model.hparams["model"]["arch"] == "smallcnn"
