"""The OOD suite in a real Lightning test loop: fit on ID training data, rows per detector and set, plots."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from PIL import Image
from torch import nn

from robustlit.data import DigitsDataModule, HeldOutClassesDataModule
from robustlit.data.ood_sets import dataset_targets
from robustlit.module import RobustClassifier
from robustlit.suites import OODSuite

HELD_OUT = [8, 9]


def template_classifier(data: HeldOutClassesDataModule) -> nn.Module:
    """A nearest-template digit classifier: hidden unit k matches class k's centered mean image."""
    train = data.train_dataset
    x = torch.stack([train[i][0] for i in range(len(train))]).flatten(1)
    y = torch.tensor(dataset_targets(train))
    templates = torch.stack([x[y == k].mean(0) for k in range(data.num_classes)])
    centered = templates - x.mean(0)
    hidden, head = nn.Linear(64, data.num_classes), nn.Linear(data.num_classes, data.num_classes)
    with torch.no_grad():
        hidden.weight.copy_(centered / centered.norm(dim=1, keepdim=True))
        hidden.bias.copy_(-(hidden.weight @ x.mean(0)))
        head.weight.copy_(4 * torch.eye(data.num_classes))
        head.bias.zero_()
    return nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), head)


@pytest.fixture(scope="module")
def tested_suite():
    data = HeldOutClassesDataModule(DigitsDataModule(image_size=8, channels=1, batch_size=64), held_out=HELD_OUT,
                                    limit_test=120)
    module = RobustClassifier(model=template_classifier(data), num_classes=8, in_channels=1)
    suite = OODSuite(
        detectors=["msp", "energy", "odin", "mahalanobis", {"name": "knn", "k": 5}, {"name": "vim", "dim": 4},
                   "react", {"name": "energy", "temperature": 10.0, "label": "energy_t10"}],
        ood_sets=["held_out", "uniform", {"name": "blobs", "size": 50}],
        ood_size=80, fit_limit=300,
    )
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[suite])
    trainer.test(module, datamodule=data, verbose=False)
    return suite, data


def test_rows_cover_every_detector_and_set_with_their_means(tested_suite):
    suite, data = tested_suite
    rows = {(m.name, m.context["detector"], m.context["ood_set"]): m.value for m in suite.results}
    detectors = ["msp", "energy", "odin", "mahalanobis", "knn", "vim", "react", "energy_t10"]
    sets = ["held_out", "uniform", "blobs"]
    assert set(rows) == {(n, d, s) for n in ("auroc", "aupr_in", "aupr_out", "fpr95") for d in detectors
                         for s in [*sets, "mean"]}
    assert all(0 <= value <= 1 for value in rows.values())
    for detector in detectors:
        mean = sum(rows[("auroc", detector, s)] for s in sets) / 3
        assert rows[("auroc", detector, "mean")] == pytest.approx(mean)
    assert len(suite.stored("score:msp")) == 120
    assert len(suite.ood_scores["held_out"]["msp"]) == len(data.ood_dataset)
    assert len(suite.ood_scores["blobs"]["knn"]) == 50 and len(suite.ood_scores["uniform"]["knn"]) == 80
    # every detector tells unseen digits and noise from the ID digits (measured 0.87-0.94), except ViM:
    # its residual is the part of the feature the head ignores, and this 8x8 head ignores nothing
    for detector in detectors:
        if detector != "vim":
            assert rows[("auroc", detector, "mean")] > 0.85, detector


def test_plots_are_written_with_alt_text(tested_suite, tmp_path):
    suite, _ = tested_suite
    artifacts = suite.write_artifacts(tmp_path)
    assert [a.name for a in artifacts] == ["ood_score_histograms.png", "ood_roc.png"]
    for artifact in artifacts:
        with Image.open(artifact.uri) as image:
            assert image.format == "PNG"
            text = image.text["Description"]
        assert "held_out, uniform, blobs" in text and "mahalanobis" in text


def test_configuration_errors_are_explained():
    with pytest.raises(Exception, match=r"detectors \['nope'\] are unknown"):
        OODSuite(detectors=["nope"])
    with pytest.raises(Exception, match="repeat a name"):
        OODSuite(detectors=["energy", {"name": "energy", "temperature": 2.0}])
    with pytest.raises(Exception, match="fit_split='test'"):
        OODSuite(fit_split="test")
    suite = OODSuite(detectors=["msp"], ood_sets=["held_out"])
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    batches = [(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]))]
    with pytest.raises(Exception, match="data has no held-out classes"):
        suite.evaluate(net, batches, fit_loader=batches)
    with pytest.raises(Exception, match="needs fit_loader"):
        suite.evaluate(net, batches)


def test_torchscript_models_skip_feature_detectors_with_a_warning():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; TorchScript files still exist
        scripted = torch.jit.script(net)
    batches = [(torch.rand(20, 1, 4, 4), torch.arange(20) % 3)]
    suite = OODSuite(detectors=["msp", "knn"], ood_sets=["uniform"], ood_size=10)
    with pytest.warns(UserWarning, match="knn skipped"):
        metrics = suite.evaluate(scripted, batches, fit_loader=batches)
    assert {m.context["detector"] for m in metrics} == {"msp"}
    assert [w.check for w in suite.warnings] == ["detector_skipped"]


def test_robustlit_eval_writes_ood_calibration_and_selective_rows_with_plots(compose_config, tmp_path):
    """``robustlit-eval … evaluation=[ood,calibration,selective]`` end to end on the embedded digits."""
    from robustlit.cli.eval import evaluate
    from robustlit.models import SmallCNN

    torch.manual_seed(0)
    checkpoint = tmp_path / "smallcnn.state_dict.pt"
    torch.save(SmallCNN(num_classes=10, in_channels=1, width=4, mean=(0.5,), std=(0.25,)).state_dict(), checkpoint)
    overrides = [
        "model=smallcnn", "model.width=4", f"model.checkpoint={checkpoint}", "data=digits", "data.limit_test=60",
        "evaluation=[ood,calibration,selective]", "evaluation.ood.detectors=[msp,mahalanobis,knn]",
        "evaluation.ood.ood_sets=[uniform,blobs]", "evaluation.ood.fit_limit=200", "evaluation.ood.ood_size=30",
        "evaluation.calibration.target_risks=[0.95]",
        f"output_dir={tmp_path / 'run'}",
    ]
    with pytest.warns(UserWarning, match="did not converge"):  # untrained: the NLL falls as T grows
        report, path = evaluate(compose_config("eval", overrides), verbose=False)
    assert "temperature_not_converged" in {finding.check for finding in report.warnings}
    assert len(report.find("ood", "auroc")) == 3 * 3  # 3 detectors x (2 sets + mean)
    assert report.find("ood", "fpr95", detector="knn", ood_set="mean")
    assert report.find("calibration", "temperature")[0].context["n"] == 12  # 20% of the 60 test samples
    assert report.find("selective", "e_aurc")[0].value >= 0
    names = {artifact.name for artifact in report.artifacts}
    assert {"ood_score_histograms.png", "ood_roc.png", "selective_risk_coverage.png"} <= names
    assert all((tmp_path / "run" / name).is_file() for name in names if name.endswith(".png"))
    assert {"suite/ood", "suite/calibration", "suite/selective"} <= set(report.timings)
    assert path.is_file()
