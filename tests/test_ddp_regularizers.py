"""SAM and group DRO under 2-process CPU DDP (gloo, ddp_spawn): parameters and q stay identical across ranks."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from robustlit.callbacks import SAM, GroupDRO
from robustlit.data import GroupImages
from robustlit.module import RobustClassifier


class DumpState(L.Callback):
    """Each rank saves its parameters, the batches it saw and group DRO's q when training ends."""

    def __init__(self, directory: Path, dro: GroupDRO) -> None:
        self.directory = directory
        self.dro = dro
        self.labels: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.labels.append(batch[1].clone())

    def on_train_end(self, trainer, pl_module):
        torch.save(
            {"params": [p.detach().clone() for p in pl_module.parameters()], "q": self.dro.q.clone(),
             "labels": torch.cat(self.labels)},
            self.directory / f"rank{trainer.global_rank}.pt",
        )


def _dataset() -> GroupImages:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (32,), generator=generator).tolist()
    groups = torch.randint(0, 4, (32,), generator=generator).tolist()
    return GroupImages(images, labels, groups, ("a", "b", "c", "d"))


@pytest.mark.slow
def test_sam_and_group_dro_keep_ranks_identical(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    model = RobustClassifier(net, num_classes=3, optimizer=partial(torch.optim.SGD, lr=0.2, momentum=0.9))
    initial = [p.detach().clone() for p in model.parameters()]
    dro = GroupDRO(num_groups=4, eta=1.0)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, deterministic=True,
        callbacks=[SAM(rho=0.1), dro, DumpState(tmp_path, dro)],
    )
    trainer.fit(model, DataLoader(_dataset(), batch_size=4, shuffle=True))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert not torch.equal(rank0["labels"], rank1["labels"])  # the ranks trained on different halves
    for a, b, start in zip(rank0["params"], rank1["params"], initial, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, start)
    torch.testing.assert_close(rank0["q"], rank1["q"], rtol=0, atol=0)
    assert not torch.allclose(rank0["q"], torch.full((4,), 0.25))
