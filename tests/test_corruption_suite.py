"""CorruptionSuite: rows and formulas against direct computation, batch-size independence, errors, and the CLI."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, TensorDataset

from robustlit.cli.eval import evaluate
from robustlit.corruptions import corrupt, occlude
from robustlit.errors import ConfigError
from robustlit.metrics.corruption import Baseline, mce, relative_mce
from robustlit.suites import CorruptionSuite
from tests.nets import small_cnn

CORRUPTIONS = ["gaussian_noise", "contrast", "speckle_noise"]
BASELINE = {"gaussian_noise": 0.8, "contrast": {1: 0.5, 5: 0.9}, "speckle_noise": 0.7, "clean": 0.6}


@pytest.fixture(scope="module")
def setup():
    model = small_cnn(width=4).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 16, 16, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::3] = (y[::3] + 1) % 10  # a third of the clean predictions wrong
    return model, x, y


def _suite(**options):
    return CorruptionSuite(corruptions=CORRUPTIONS, severities=[1, 5], baseline=BASELINE, seed=3,
                           occlusion_patches=[4, 0.5], occlusion_positions=2, **options)


def _rows(metrics):
    return {(m.name, tuple(sorted(m.context.items()))): m.value for m in metrics}


def test_rows_match_direct_computation(setup):
    model, x, y = setup
    metrics = _suite().evaluate(model, DataLoader(TensorDataset(x, y), batch_size=5))
    rows = _rows(metrics)
    errors = {}
    with torch.no_grad():
        for name in CORRUPTIONS:
            for severity in (1, 5):
                corrupted = corrupt(x, name, severity, seed=3, sample_ids=torch.arange(12))
                error = float((model(corrupted).argmax(1) != y).float().mean())
                errors.setdefault(name, {})[severity] = error
                assert rows[("error", (("corruption", name), ("severity", severity)))] == pytest.approx(error)
            mean = rows[("mean_error", (("corruption", name),))]
            assert mean == pytest.approx((errors[name][1] + errors[name][5]) / 2)
        clean_error = float((model(x).argmax(1) != y).float().mean())
    standard = {k: v for k, v in errors.items() if k != "speckle_noise"}  # extras stay out of mCE
    baseline = Baseline("dict", {"gaussian_noise": dict.fromkeys(range(1, 6), 0.8), "contrast": {1: 0.5, 5: 0.9}},
                        clean_error=0.6)
    assert rows[("mce", (("baseline", "dict"),))] == pytest.approx(mce(standard, baseline))
    relative = relative_mce(standard, clean_error, baseline)
    assert rows[("relative_mce", (("baseline", "dict"),))] == pytest.approx(relative)
    occluded = [key for key in rows if key[0] == "occlusion_accuracy"]
    assert sorted(dict(k[1])["position"] for k in occluded if dict(k[1])["patch"] == 4) == ["0,0", "0,12", "12,0",
                                                                                        "12,12", "mean"]
    assert {dict(k[1])["patch"] for k in occluded} == {4, 8}
    with torch.no_grad():
        expected = float((model(occlude(x, 8, 0, 8)).argmax(1) == y).float().mean())
    assert rows[("occlusion_accuracy", (("patch", 8), ("position", "0,8")))] == pytest.approx(expected)


def test_results_do_not_depend_on_batch_size(setup):
    model, x, y = setup
    small = _rows(_suite().evaluate(model, DataLoader(TensorDataset(x, y), batch_size=5)))
    large = _rows(_suite(batch_size=2).evaluate(model, DataLoader(TensorDataset(x, y), batch_size=12)))
    assert small == large


def test_unnormalized_mce_without_baseline(setup):
    model, x, y = setup
    rows = _rows(CorruptionSuite(corruptions=["fog", "saturate"], severities=[2]).evaluate(
        model, DataLoader(TensorDataset(x, y), batch_size=12)))
    assert rows[("mce", (("baseline", "none"),))] == pytest.approx(rows[("error", (("corruption", "fog"),
                                                                                   ("severity", 2)))])
    assert not any(key[0] == "relative_mce" for key in rows)


def test_bad_options_raise_clear_errors():
    with pytest.raises(MisconfigurationException, match="unknown corruptions \\['fogg'\\]"):
        CorruptionSuite(corruptions=["fogg"])
    with pytest.raises(MisconfigurationException, match="use 'standard', 'all' or a list"):
        CorruptionSuite(corruptions="most")
    with pytest.raises(MisconfigurationException, match="severities \\[0, 6\\] are invalid"):
        CorruptionSuite(severities=[0, 6])
    with pytest.raises(MisconfigurationException, match="occlusion_patches entry 1.5"):
        CorruptionSuite(occlusion_patches=[1.5])
    with pytest.raises(ConfigError, match="baseline 'dict' has no error for snow"):
        CorruptionSuite(corruptions=["fog", "snow"], baseline={"fog": 0.5})


def test_robustlit_eval_writes_the_corruption_rows(shared, cifar10_test_dir, compose_config, tmp_path):
    """``robustlit-eval … evaluation=[corruption]`` end to end; a run used as its own baseline has mCE 1."""
    checkpoint = shared("models/smallcnn_std.torchscript.pt")
    overrides = [
        f"model.checkpoint={checkpoint}", "data=imagefolder", f"data.root={cifar10_test_dir}", "data.limit_test=24",
        "evaluation=[corruption]", "evaluation.corruption.corruptions=[gaussian_noise,contrast]",
        "evaluation.corruption.severities=[4,5]", "evaluation.corruption.occlusion_patches=[16]",
    ]
    first, path = evaluate(compose_config("eval", [*overrides, f"output_dir={tmp_path / 'a'}"]), verbose=False)
    assert len(first.find("corruption", "error")) == 4 and len(first.find("corruption", "mean_error")) == 2
    assert first.find("corruption", "mce", baseline="none")
    assert len(first.find("corruption", "occlusion_accuracy")) == 10
    assert "suite/corruption" in first.timings
    again, _ = evaluate(compose_config("eval", [*overrides, f"evaluation.corruption.baseline={path}",
                                                 f"output_dir={tmp_path / 'b'}"]), verbose=False)
    assert again.find("corruption", "mce", baseline=str(path))[0].value == pytest.approx(1.0)
    assert again.find("corruption", "relative_mce", baseline=str(path))[0].value == pytest.approx(1.0)
