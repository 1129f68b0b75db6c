"""Download-free OOD sets, the SVHN .mat and image-folder loaders, and held-out classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from scipy.stats import norm

from robustlit.data import DigitsDataModule, HeldOutClassesDataModule, NoiseImages, build_ood_set, digits_ood
from robustlit.data.ood_sets import dataset_targets
from robustlit.errors import ConfigError, DataError


def _stack(dataset, n=None):
    return torch.stack([dataset[i][0] for i in range(n or len(dataset))])


def test_noise_sets_have_their_documented_statistics_and_are_seeded():
    gaussian = _stack(NoiseImages("gaussian", 64, 3, 16, seed=0))
    assert gaussian.mean().item() == pytest.approx(0.5, abs=0.01)
    # clipping N(0.5, 0.25²) to [0, 1] is clipping z at ±2: E[clip(z)²] = 2Φ(2) − 1 − 4φ(2) + 4·2(1 − Φ(2))
    clipped_var = 2 * norm.cdf(2) - 1 - 4 * norm.pdf(2) + 8 * norm.sf(2)
    assert gaussian.std().item() == pytest.approx(0.25 * np.sqrt(clipped_var), abs=0.004)
    uniform = _stack(NoiseImages("uniform", 64, 3, 16, seed=0))
    assert uniform.mean().item() == pytest.approx(0.5, abs=0.01)
    assert uniform.var().item() == pytest.approx(1 / 12, abs=0.005)
    blobs = _stack(NoiseImages("blobs", 16, 3, 32, seed=0))
    positive = blobs[blobs > 0]
    assert float(positive.min()) >= 0.75 and float(blobs.max()) <= 1
    assert 0.05 < float((blobs > 0).float().mean()) < 0.95  # blobs, not all-on or all-off
    again = NoiseImages("gaussian", 64, 3, 16, seed=0)
    assert torch.equal(again[5][0], gaussian[5]) and not torch.equal(gaussian[5], gaussian[6])
    assert not torch.equal(NoiseImages("gaussian", 64, 3, 16, seed=1)[5][0], gaussian[5])


def test_digits_are_upscaled_to_rgb():
    images = digits_ood(32, 3, size=20)
    x = _stack(images)
    assert x.shape == (20, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 2]) and float(x.max()) == 1.0


def test_svhn_mat_loader(tmp_path):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    path = tmp_path / "test_32x32.mat"
    savemat(path, {"X": images, "y": np.array([[10], [1], [2], [3], [4]], dtype=np.uint8)})
    svhn = build_ood_set({"name": "svhn", "path": str(path)}, image_size=32, channels=3)
    x, label = svhn[0]
    assert len(svhn) == 5 and label == 0  # SVHN stores digit 0 as 10
    torch.testing.assert_close(x, torch.from_numpy(images[..., 0].transpose(2, 0, 1)).float() / 255)
    gray = build_ood_set({"name": "svhn", "path": str(path), "size": 2}, image_size=16, channels=1)
    assert len(gray) == 2 and gray[0][0].shape == (1, 16, 16)
    savemat(tmp_path / "bad.mat", {"Z": images})
    with pytest.raises(DataError, match="has no X of shape"):
        build_ood_set({"name": "svhn", "path": str(tmp_path / "bad.mat")}, 32, 3)
    with pytest.raises(DataError, match="does not exist"):
        build_ood_set({"name": "svhn", "path": str(tmp_path / "none.mat")}, 32, 3)


def test_image_folder_loader_reads_nested_and_flat_folders(tmp_path):
    (tmp_path / "dtd" / "banded").mkdir(parents=True)
    Image.new("RGB", (40, 60), (255, 0, 0)).save(tmp_path / "dtd" / "banded" / "a.jpg")
    Image.new("L", (32, 32), 128).save(tmp_path / "dtd" / "b.png")
    (tmp_path / "dtd" / "notes.txt").write_text("not an image")
    textures = build_ood_set({"name": "folder", "path": str(tmp_path / "dtd"), "label": "textures"}, 32, 3)
    assert len(textures) == 2
    gray, red = textures[0][0], textures[1][0]  # sorted paths: dtd/b.png before dtd/banded/a.jpg
    assert red.shape == gray.shape == (3, 32, 32)
    assert float(red[0].mean()) > 0.95 and float(red[1].mean()) < 0.05
    assert torch.allclose(gray, torch.full_like(gray, 128 / 255))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        build_ood_set({"name": "folder", "path": str(tmp_path / "empty")}, 32, 3)
    with pytest.raises(ConfigError, match="needs a path"):
        build_ood_set("folder", 32, 3)
    with pytest.raises(ConfigError, match="unknown OOD set 'cifar'"):
        build_ood_set("cifar", 32, 3)


def test_held_out_classes_split_train_test_and_ood():
    base = DigitsDataModule(image_size=8)
    data = HeldOutClassesDataModule(base, held_out=[3, 7])
    assert data.num_classes == 8 and data.class_names == ("0", "1", "2", "4", "5", "6", "8", "9")
    train_labels = dataset_targets(data.train_dataset)
    assert set(train_labels) == set(range(8))
    assert len(train_labels) == sum(t not in (3, 7) for t in dataset_targets(base.train_dataset))
    ood = dataset_targets(data.ood_dataset)
    assert set(ood) == {3, 7} and len(ood) == sum(t in (3, 7) for t in dataset_targets(base.test_dataset))
    x, y = data.test_dataset[0]
    assert x.shape == (1, 8, 8) and 0 <= y < 8
    with pytest.raises(ConfigError, match="some but not all"):
        HeldOutClassesDataModule(base, held_out=list(range(10)))
