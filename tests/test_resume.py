"""Resume: a run stopped after N steps and resumed from its checkpoint ends with the uninterrupted run's weights."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from robustlit.callbacks import SAM, SWA, GroupDRO
from robustlit.data import GroupImages
from robustlit.module import RobustClassifier

EPOCHS, BATCHES = 4, 4

CALLBACKS = {
    "sam": lambda: [SAM(rho=0.1)],
    "swa": lambda: [SWA(swa_lrs=0.05, swa_epoch_start=2, device=None)],
    "ema": lambda: [WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(decay=0.8))],
    "group_dro": lambda: [GroupDRO(num_groups=4, eta=0.5)],
}


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    n = 8 * BATCHES
    images = torch.rand(n, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator).tolist()
    groups = torch.randint(0, 3, (n,), generator=generator).tolist()  # group 3 stays empty
    return DataLoader(GroupImages(images, labels, groups, ("a", "b", "c", "d")), batch_size=8)


def _model() -> RobustClassifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    return RobustClassifier(net, num_classes=3,
                            optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3))


def _fit(kind: str, directory: Path, max_steps: int = -1, ckpt_path: Path | None = None):
    model, callbacks = _model(), CALLBACKS[kind]()
    trainer = L.Trainer(
        # a checkpoint every epoch, as a run that gets killed would have left behind
        callbacks=[*callbacks, ModelCheckpoint(dirpath=directory, filename="{epoch}", save_top_k=-1)],
        max_epochs=EPOCHS, max_steps=max_steps, accelerator="cpu", deterministic=True, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return model, callbacks[0], trainer


@pytest.mark.parametrize("kind", sorted(CALLBACKS))
def test_resumed_run_ends_with_the_uninterrupted_weights(kind, tmp_path):
    reference, reference_callback, finished = _fit(kind, tmp_path / "full")
    _, _, stopped = _fit(kind, tmp_path / "part", max_steps=2 * BATCHES)  # killed after N = 8 steps
    assert stopped.global_step == 2 * BATCHES
    checkpoint = tmp_path / "part" / "epoch=1.ckpt"
    resumed, resumed_callback, trainer = _fit(kind, tmp_path / "resumed", ckpt_path=checkpoint)
    assert trainer.global_step == finished.global_step >= EPOCHS * BATCHES
    expected, got = reference.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    if kind == "group_dro":
        torch.testing.assert_close(resumed_callback.q, reference_callback.q, rtol=0, atol=0)
        assert not torch.allclose(reference_callback.q, torch.full((4,), 0.25))  # q moved and came back with resume
    interrupted_run_weights = _model()
    assert not torch.equal(interrupted_run_weights.model[0].weight, resumed.model[0].weight)
