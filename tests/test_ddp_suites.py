"""Evaluation suites under DDP report exactly what a single process reports (2-process CPU ddp_spawn).

The OOD suite is not in the run: its detectors fit on the datamodule's training loader, which this
loader-only Trainer run does not have.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from robustlit.suites import (
    AdversarialSuite,
    CalibrationSuite,
    CertifiedSuite,
    CleanSuite,
    CorruptionSuite,
    EvaluationSuite,
    SelectiveSuite,
)
from tests.nets import small_cnn

N_SAMPLES = 37  # odd, so the distributed sampler pads one rank with a repeated sample


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn(width=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        return None


class DumpResults(L.Callback):
    """Runs after the suites; rank 0 writes their metrics where the test can read them."""

    def __init__(self, suites: list[EvaluationSuite], path: Path) -> None:
        self.suites = suites
        self.path = path

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            rows = [[m.key, m.context, m.value] for suite in self.suites for m in suite.results]
            self.path.write_text(json.dumps(rows, default=str))


def make_suites() -> list[EvaluationSuite]:
    return [
        CleanSuite(),
        AdversarialSuite(attacks=["pgd", "fgsm"], eps={"Linf": [2 / 255, 8 / 255]}, steps=3, checks=False),
        CleanSuite(limit=20),
        CalibrationSuite(n_bins=5, holdout_fraction=0.3, target_risks=(0.5,), corruptions=["gaussian_noise"],
                         severities=[2]),
        CorruptionSuite(corruptions=["gaussian_noise", "contrast"], severities=[1, 3], occlusion_patches=[0.5],
                        occlusion_positions=2),
        SelectiveSuite(risks=(0.5,)),
        CertifiedSuite(methods=("smoothing", "ibp", "lipschitz"), n0=8, n=40, radii=(0.0, 0.05), eps=("1/255",)),
    ]


def run(tmp_path: Path, name: str, **trainer_options: object) -> list[list[object]]:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(N_SAMPLES, 3, 8, 8, generator=generator),
                         torch.randint(0, 10, (N_SAMPLES,), generator=generator))
    suites = make_suites()
    out = tmp_path / f"{name}.json"
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[*suites, DumpResults(suites, out)], **trainer_options)
    trainer.test(Classifier(), dataloaders=DataLoader(data, batch_size=5), verbose=False)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_process_ddp_report_equals_single_process(tmp_path: Path) -> None:
    single = run(tmp_path, "single", devices=1)
    distributed = run(tmp_path, "ddp", devices=2, strategy="ddp_spawn")
    assert [row[:2] for row in single] == [row[:2] for row in distributed]
    assert [row[2] for row in single] == pytest.approx([row[2] for row in distributed], abs=0)
    clean = [row for row in single if row[0] == "clean/accuracy"]
    assert [row[1]["n"] for row in clean] == [N_SAMPLES, 20]
    suites = {row[0].split("/")[0] for row in single}
    assert suites == {"clean", "adversarial", "calibration", "corruption", "selective", "certified"}


def test_store_orders_by_sample_id_and_drops_repeats() -> None:
    suite = CleanSuite()
    suite._start()
    suite.store("correct", torch.tensor([True, False, True]), torch.tensor([4, 0, 2]))
    suite.store("correct", torch.tensor([False, True]), torch.tensor([1, 4]))  # 4 again: padding repeats
    assert suite.stored("correct").tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="2 values for 3 sample ids"):
        suite.store("correct", torch.tensor([True, False]), torch.tensor([5, 6, 7]))
    with pytest.raises(KeyError, match="stored nothing under 'logits'"):
        suite.stored("logits")


def test_evaluate_without_trainer_limits_to_the_first_samples() -> None:
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.rand(12, 3, 8, 8, generator=generator), torch.randint(0, 10, (12,), generator=generator))
    model = small_cnn(width=4).eval()
    metrics = CleanSuite(limit=7).evaluate(model, DataLoader(data, batch_size=5))
    with torch.no_grad():
        expected = (model(data.tensors[0][:7]).argmax(1) == data.tensors[1][:7]).float().mean().item()
    assert metrics[0].context == {"n": 7}
    assert metrics[0].value == pytest.approx(expected)
