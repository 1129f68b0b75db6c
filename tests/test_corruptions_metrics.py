"""mCE and relative mCE on hand fixtures, baselines, and the released CIFAR-10-C ``.npy`` layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustlit.data import CIFAR10CDataModule, load_corrupted_arrays
from robustlit.errors import ConfigError, DataError
from robustlit.metrics.corruption import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    Baseline,
    corruption_errors,
    load_baseline,
    mce,
    mean_errors,
    relative_mce,
    unnormalized_mce,
)

ERRORS = {"fog": {1: 0.2, 2: 0.4}, "snow": {1: 0.3, 2: 0.5}}
BASELINE = Baseline("hand", {"fog": {1: 0.4, 2: 0.6}, "snow": {1: 0.5, 2: 0.5}}, clean_error=0.3)


def test_mce_and_relative_mce_on_a_hand_fixture():
    assert mean_errors(ERRORS) == pytest.approx({"fog": 0.3, "snow": 0.4})
    assert unnormalized_mce(ERRORS) == pytest.approx(0.35)
    # CE_fog = (0.2 + 0.4) / (0.4 + 0.6) = 0.6, CE_snow = 0.8 / 1.0 = 0.8
    assert corruption_errors(ERRORS, BASELINE) == pytest.approx({"fog": 0.6, "snow": 0.8})
    assert mce(ERRORS, BASELINE) == pytest.approx(0.7)
    # relative, clean error 0.1: fog (0.1 + 0.3) / (0.1 + 0.3) = 1, snow (0.2 + 0.4) / (0.2 + 0.2) = 1.5
    assert relative_mce(ERRORS, 0.1, BASELINE) == pytest.approx(1.25)
    # a baseline that loses no accuracy under a corruption leaves relative CE undefined
    assert math.isnan(relative_mce({"fog": {1: 0.2}}, 0.1, Baseline("flat", {"fog": {1: 0.3}}, clean_error=0.3)))


def test_alexnet_normalizes_itself_to_one():
    alexnet = load_baseline("AlexNet")
    own = {name: dict.fromkeys(range(1, 6), error) for name, error in ALEXNET_ERRORS.items()}
    assert len(ALEXNET_ERRORS) == 15 and ALEXNET_CLEAN_ERROR == 0.4348
    assert mce(own, alexnet) == pytest.approx(1.0)
    assert relative_mce(own, ALEXNET_CLEAN_ERROR, alexnet) == pytest.approx(1.0)
    halved = {name: {s: e / 2 for s, e in by.items()} for name, by in own.items()}
    assert mce(halved, alexnet) == pytest.approx(0.5)


def test_baseline_from_a_dict_and_its_errors():
    baseline = load_baseline({"fog": 0.5, "snow": {"1": "0.25"}, "clean": 0.1})
    assert baseline.errors == {"fog": dict.fromkeys(range(1, 6), 0.5), "snow": {1: 0.25}}
    assert baseline.clean_error == 0.1
    with pytest.raises(ConfigError, match=r"no error for snow at severities \[2\]"):
        mce({"snow": {1: 0.3, 2: 0.4}}, baseline)
    with pytest.raises(ConfigError, match="has no clean error"):
        relative_mce(ERRORS, 0.1, Baseline("x", BASELINE.errors))
    with pytest.raises(ConfigError, match="is malformed"):
        load_baseline({"fog": "high"})
    with pytest.raises(ConfigError, match="pass 'alexnet', a robustness_report.json or a dict"):
        load_baseline("/nonexistent/robustness_report.json")


def _write_cifar_c(folder, per_severity=4):
    images = np.repeat(np.arange(1, 6, dtype=np.uint8) * 10, per_severity)[:, None, None, None]
    np.save(folder / "fog.npy", np.broadcast_to(images, (5 * per_severity, 32, 32, 3)).copy())
    np.save(folder / "labels.npy", (np.arange(5 * per_severity) % 10).astype(np.uint8))


def test_npy_loader_slices_each_severity(tmp_path):
    _write_cifar_c(tmp_path)
    images, labels = load_corrupted_arrays(tmp_path, "fog", 3)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert bool((images == 30).all()) and labels == [8, 9, 0, 1]
    dm = CIFAR10CDataModule(tmp_path, corruption="fog", severity=2, batch_size=3)
    x, y = next(iter(dm.test_dataloader()))
    assert dm.name == "cifar10c/fog/2" and x.shape == (3, 3, 32, 32)
    assert torch.allclose(x, torch.full_like(x, 20 / 255)) and y.tolist() == [4, 5, 6]
    with pytest.raises(DataError, match="test set only"):
        dm.setup("fit")


def test_cifar10c_config_builds_the_datamodule(tmp_path, compose_config):
    from robustlit.cli.build import build_datamodule

    _write_cifar_c(tmp_path)
    cfg = compose_config("eval", ["data=cifar10c", f"data.root={tmp_path}", "data.severity=4", "output_dir=/tmp/x"])
    dm = build_datamodule(cfg, "test")
    x, _ = next(iter(dm.test_dataloader()))
    assert dm.name == "cifar10c/fog/4" and torch.allclose(x, torch.full_like(x, 40 / 255))


def test_npy_loader_errors_name_the_problem(tmp_path):
    _write_cifar_c(tmp_path)
    with pytest.raises(DataError, match=r"snow.npy not found \(available: fog\)"):
        load_corrupted_arrays(tmp_path, "snow", 1)
    with pytest.raises(ConfigError, match="data.severity=6 must be an integer from 1 to 5"):
        load_corrupted_arrays(tmp_path, "fog", 6)
    with pytest.raises(DataError, match="no snow.npy under data.root"):
        CIFAR10CDataModule(tmp_path, corruption="snow", severity=1)
    np.save(tmp_path / "labels.npy", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="7 labels for 20 images"):
        load_corrupted_arrays(tmp_path, "fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 \(5·N, H, W, 3\)"):
        load_corrupted_arrays(tmp_path, "fog", 1)
