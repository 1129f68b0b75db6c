import inspect
import pickle
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from robustlit.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageFolderDataModule,
    RobustDataModule,
    stratified_split,
)
from robustlit.errors import ConfigError, DataError

CONF_DATA = Path(__file__).resolve().parents[1] / "conf" / "data"


def collect(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def write_tree(folder: Path, counts: dict[str, int], size=(16, 16), mode="RGB", seed=0) -> None:
    """Write ``counts[class]`` random PNG images under ``folder/<class>/``."""
    rng = np.random.RandomState(seed)
    channels = 3 if mode == "RGB" else 1
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.randint(0, 256, (size[1], size[0], channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(
                folder / name / f"{i:03d}.png"
            )


@pytest.fixture
def split_tree(tmp_path):
    root = tmp_path / "pets"
    write_tree(root / "train", {"cat": 10, "dog": 10})
    write_tree(root / "test", {"cat": 3, "dog": 3}, seed=1)
    return root


# ---------------------------------------------------------------- digits


def test_digits_shapes_range_and_classes():
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    assert (dm.name, dm.num_classes, dm.in_channels, dm.image_size) == ("digits", 10, 1, 32)
    assert dm.class_names == tuple("0123456789")
    assert len(dm.mean) == len(dm.std) == 1 and 0 < dm.mean[0] < 1 and dm.std[0] > 0
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.shape == (64, 1, 32, 32) and x.dtype == torch.float32
        assert y.dtype == torch.int64
    x, y = collect(dm.test_dataloader())
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    assert set(y.tolist()) == set(range(10))


def test_digits_split_sizes_disjoint_and_stratified():
    dm = DigitsDataModule()
    parts = dm.split_indices
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == 1797
    assert set(parts["train"]) | set(parts["val"]) | set(parts["test"]) == set(range(1797))
    assert not set(parts["train"]) & set(parts["val"])
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["val"]) & set(parts["test"])
    assert abs(sizes["test"] - 0.2 * 1797) <= 10 and abs(sizes["val"] - 0.1 * 1797) <= 10
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (
        sizes["train"],
        sizes["val"],
        sizes["test"],
    )
    _, y = collect(dm.test_dataloader())
    counts = torch.bincount(y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 37  # ~20% of 174..183 per class


def test_digits_split_is_deterministic():
    a, b, c = DigitsDataModule(), DigitsDataModule(), DigitsDataModule(split_seed=1)
    assert a.split_indices == b.split_indices
    assert a.split_indices["test"] != c.split_indices["test"]


def test_digits_three_channels_and_size():
    dm = DigitsDataModule(image_size=16, channels=3, batch_size=8)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2])
    assert dm.in_channels == 3 and len(dm.mean) == 3


def test_digits_augment_keeps_shape_and_range():
    L.seed_everything(0, verbose=False)
    dm = DigitsDataModule(augment=True, batch_size=32)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 32, 32) and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"image_size": 4}, "data.image_size"),
        ({"channels": 2}, "data.channels"),
        ({"val_fraction": 1.0}, "data.val_fraction"),
        ({"test_fraction": 0}, "data.test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.val_fraction"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"limit_test": 0}, "data.limit_test"),
        ({"limit_test": -5}, "data.limit_test"),
        ({"subset_seed": -1}, "data.subset_seed"),
    ],
)
def test_digits_rejects_bad_options(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        DigitsDataModule(**kwargs)


# ---------------------------------------------------------------- base: subsets, order, fingerprint


def test_limit_test_larger_than_test_set():
    dm = DigitsDataModule(limit_test=5000)
    with pytest.raises(ConfigError, match=r"data.limit_test=5000 .* 359 test samples"):
        dm.setup("test")


def test_limit_test_subset_is_seeded_and_independent_of_batch_size():
    x1, y1 = collect(DigitsDataModule(limit_test=100, batch_size=7).test_dataloader())
    x2, y2 = collect(DigitsDataModule(limit_test=100, batch_size=64).test_dataloader())
    assert len(y1) == 100 and torch.equal(x1, x2) and torch.equal(y1, y2)

    L.seed_everything(123, verbose=False)  # the run seed must not move the subset
    x3, _ = collect(DigitsDataModule(limit_test=100).test_dataloader())
    assert torch.equal(x1, x3)

    x4, _ = collect(DigitsDataModule(limit_test=100, subset_seed=1).test_dataloader())
    assert not torch.equal(x1, x4)


def test_smaller_limit_is_a_subset_of_a_larger_one():
    small = DigitsDataModule(limit_test=50).test_dataset.indices
    large = DigitsDataModule(limit_test=200).test_dataset.indices
    assert small == sorted(small) and set(small) <= set(large)


def test_fingerprint_stable_and_sensitive():
    base = DigitsDataModule(limit_test=100, batch_size=16).fingerprint()
    assert len(base) == 64 and int(base, 16) >= 0
    assert DigitsDataModule(limit_test=100, batch_size=100).fingerprint() == base
    L.seed_everything(5, verbose=False)
    assert DigitsDataModule(limit_test=100).fingerprint() == base
    assert DigitsDataModule(limit_test=101).fingerprint() != base
    assert DigitsDataModule(limit_test=100, subset_seed=3).fingerprint() != base
    assert DigitsDataModule(limit_test=100, image_size=16).fingerprint() != base
    assert DigitsDataModule().fingerprint() != base


def test_train_order_follows_lightning_seed_and_test_order_is_fixed():
    def first_labels(seed):
        L.seed_everything(seed, verbose=False)
        return next(iter(DigitsDataModule(batch_size=32).train_dataloader()))[1]

    assert torch.equal(first_labels(7), first_labels(7))
    assert not torch.equal(first_labels(7), first_labels(8))

    dm = DigitsDataModule(batch_size=50)
    _, y = collect(dm.test_dataloader())
    assert y.tolist() == dm.test_dataset.targets


def test_describe_and_hparams():
    dm = DigitsDataModule(limit_test=100, image_size=16)
    info = dm.describe()
    assert info["name"] == "digits" and info["n_test"] == 100 and info["num_classes"] == 10
    assert info["n_train"] + info["n_val"] + len(dm.split_indices["test"]) == 1797
    assert info["fingerprint"] == dm.fingerprint()
    assert dm.hparams["image_size"] == 16 and dm.hparams["limit_test"] == 100


def test_fit_with_lightning_trainer(tmp_path):
    class Linear(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val/loss", torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = DigitsDataModule(image_size=8, batch_size=64)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Linear(), datamodule=dm)
    assert "val/loss" in trainer.callback_metrics


def test_stratified_split_handles_tiny_classes():
    val, train = stratified_split([0, 0, 1, 1, 1, 2], [0.5], seed=0)
    assert sorted(val + train) == list(range(6))
    assert len(val) == 3  # one of each class: round(0.5*2)=1, round(0.5*3)=2 -> 1+2+0


# ---------------------------------------------------------------- imagefolder


def test_imagefolder_train_test_layout(split_tree):
    dm = ImageFolderDataModule(split_tree, batch_size=4, val_fraction=0.2)
    assert dm.has_train and dm.name == "pets"
    assert (dm.num_classes, dm.class_names, dm.image_size, dm.in_channels) == (2, ("cat", "dog"), 16, 3)
    assert dm.mean == (0.5, 0.5, 0.5) and dm.std == (0.25, 0.25, 0.25)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (16, 4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    x, y = collect(dm.test_dataloader())
    assert x.shape == (6, 3, 16, 16) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x.min() >= 0 and x.max() <= 1
    expected = np.asarray(Image.open(split_tree / "test" / "cat" / "000.png"), dtype=np.float32) / 255
    assert torch.allclose(x[0], torch.from_numpy(expected).permute(2, 0, 1))
    assert dm.describe()["n_test"] == 6


def test_imagefolder_resize_gray_and_channels(tmp_path):
    root = tmp_path / "eval"
    write_tree(root, {"a": 2}, size=(20, 20), mode="L")
    write_tree(root, {"b": 2}, size=(24, 20))
    x, _ = collect(ImageFolderDataModule(root, image_size=12).test_dataloader())
    assert x.shape == (4, 3, 12, 12)
    assert torch.equal(x[0, 0], x[0, 1])  # a gray image becomes RGB with equal channels
    dm = ImageFolderDataModule(root, image_size=10, channels=1, mean=[0.4], std=[0.2])
    assert collect(dm.test_dataloader())[0].shape == (4, 1, 10, 10) and dm.mean == (0.4,)


def test_imagefolder_single_folder_is_evaluation_only(tmp_path):
    write_tree(tmp_path / "eval", {"x": 2, "y": 3, "z": 1})
    (tmp_path / "eval" / ".ipynb_checkpoints").mkdir()
    dm = ImageFolderDataModule(tmp_path / "eval", name="mine", batch_size=2)
    assert not dm.has_train and dm.class_names == ("x", "y", "z") and dm.name == "mine"
    dm.setup()
    assert len(dm.test_dataset) == 6
    info = dm.describe()
    assert info["n_train"] is None and info["n_test"] == 6
    with pytest.raises(DataError, match="only be evaluated.*train"):
        dm.setup("fit")


def test_imagefolder_corrupt_image_names_the_file(split_tree):
    broken = split_tree / "test" / "dog" / "001.png"
    broken.write_bytes(b"this is not a png")
    dm = ImageFolderDataModule(split_tree, batch_size=2)
    with pytest.raises(DataError, match=r"cannot read image .*dog/001\.png"):
        collect(dm.test_dataloader())
    with pytest.raises(DataError, match=r"dog/001\.png"):
        dm.fingerprint()


def test_imagefolder_truncated_first_image_fails_at_construction(tmp_path):
    write_tree(tmp_path / "eval", {"a": 2})
    first = tmp_path / "eval" / "a" / "000.png"
    first.write_bytes(first.read_bytes()[:40])
    with pytest.raises(DataError, match=r"a/000\.png"):
        ImageFolderDataModule(tmp_path / "eval")


def test_imagefolder_mixed_sizes_without_image_size(tmp_path):
    write_tree(tmp_path / "eval", {"a": 1})
    write_tree(tmp_path / "eval", {"b": 1}, size=(20, 20))
    dm = ImageFolderDataModule(tmp_path / "eval")
    with pytest.raises(DataError, match=r"b/000\.png is 20x20.*data.image_size"):
        collect(dm.test_dataloader())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "has no class folders"),
        (lambda root: (root / "cat").mkdir(parents=True), "no images"),
        (lambda root: write_tree(root / "train", {"a": 2}), "has train/ but no test/"),
        (
            lambda root: (write_tree(root / "train", {"a": 2, "b": 2}), write_tree(root / "test", {"a": 2})),
            r"differ \(only in train: \['b'\]",
        ),
    ],
    ids=["missing", "empty", "no-images", "no-test", "class-mismatch"],
)
def test_imagefolder_bad_layouts(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=message):
        ImageFolderDataModule(root)


def test_imagefolder_rejects_empty_root():
    with pytest.raises(ConfigError, match="data.root is empty"):
        ImageFolderDataModule("")


def test_imagefolder_rejects_wrong_stats_length(split_tree):
    with pytest.raises(ConfigError, match="data.mean has 1 values but data.channels=3"):
        ImageFolderDataModule(split_tree, mean=[0.5])


# ---------------------------------------------------------------- cifar


def write_fake_cifar10(root: Path, per_batch: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.randint(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": [i % 10 for i in range(per_batch)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)


@pytest.mark.parametrize(
    ("cls", "folder"), [(CIFAR10DataModule, "cifar-10"), (CIFAR100DataModule, "cifar-100")]
)
def test_cifar_missing_gives_download_hint(tmp_path, cls, folder):
    dm = cls(root=tmp_path / "nothing")
    assert dm.image_size == 32 and dm.in_channels == 3 and len(dm.class_names) == dm.num_classes
    with pytest.raises(DataError, match=rf"not found under data.root=.*data.download=true.*{folder}"):
        dm.setup("test")


def test_cifar10_reads_torchvision_format(tmp_path):
    write_fake_cifar10(tmp_path)
    dm = CIFAR10DataModule(root=tmp_path, batch_size=8, limit_test=10)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (90, 10)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    x, y = collect(dm.test_dataloader())
    assert x.shape == (10, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="latin1")["data"].reshape(-1, 3, 32, 32)
    first = dm.test_dataset.indices[0]
    assert torch.equal(x[0], torch.from_numpy(raw[first]).float() / 255)


def test_cifar_corrupt_batch_names_the_file(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="test_batch"):
        CIFAR10DataModule(root=tmp_path).setup("test")


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["digits", "imagefolder", "cifar10", "cifar100"])
def test_conf_keys_match_constructor(name):
    cfg = OmegaConf.load(CONF_DATA / f"{name}.yaml")
    cls = hydra.utils.get_class(cfg._target_)
    accepted = set(inspect.signature(cls).parameters) | set(inspect.signature(RobustDataModule).parameters)
    keys = set(cfg) - {"_target_"}
    assert keys <= accepted, keys - accepted
    assert {"batch_size", "num_workers", "limit_test"} <= keys
    assert cfg.num_workers == 0 and cfg.limit_test is None


def test_conf_instantiates(split_tree):
    dm = hydra.utils.instantiate(OmegaConf.load(CONF_DATA / "digits.yaml"))
    assert isinstance(dm, DigitsDataModule) and dm.image_size == 32
    cfg = OmegaConf.load(CONF_DATA / "imagefolder.yaml")
    assert OmegaConf.is_missing(cfg, "root")
    cfg.root, cfg.mean = str(split_tree), [0.4, 0.5, 0.6]
    assert hydra.utils.instantiate(cfg).mean == (0.4, 0.5, 0.6)


# ---------------------------------------------------------------- real data (slow)


@pytest.mark.slow
def test_cifar10_jpeg_test_split(cifar10_test_dir):
    dm = ImageFolderDataModule(cifar10_test_dir, batch_size=500)
    assert not dm.has_train and dm.num_classes == 10
    assert dm.class_names == CIFAR10DataModule.class_names
    assert dm.image_size == 32 and len(dm.test_dataset) == 10000
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (500, 3, 32, 32) and y.dtype == torch.int64
    assert torch.bincount(collect(dm.test_dataloader())[1]).tolist() == [1000] * 10
