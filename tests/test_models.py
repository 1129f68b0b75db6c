import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from robustlit.errors import CheckpointError, ConfigError, InputShapeError
from robustlit.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MODELS,
    SPEC_KEYS,
    ExportedModule,
    Normalize,
    SmallCNN,
    build_model,
    describe_model,
    factory,
    load_checkpoint,
    register_model,
)

REPO = Path(__file__).resolve().parents[1]
DATA = {"num_classes": 10, "in_channels": 3, "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
FORMATS = ("state_dict", "torchscript", "export", "lightning")


def spec(arch: str, **options) -> dict:
    return {"arch": arch, "checkpoint": None, "mean": None, "std": None, **options}


def images(n: int = 4, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def input_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    return grad


@pytest.fixture(scope="module")
def reference(shared) -> dict[str, nn.Module]:
    """The shared smallcnn_std model loaded from each of its three formats."""
    return {
        "state_dict": load_checkpoint(shared("models/smallcnn_std.state_dict.pt"), arch_builder=SmallCNN),
        "torchscript": load_checkpoint(shared("models/smallcnn_std.torchscript.pt")),
        "export": load_checkpoint(shared("models/smallcnn_std.pt2")),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[nn.Module, dict[str, Path]]:
    """A small SmallCNN with trained-looking BN statistics, saved in every supported format."""
    torch.manual_seed(0)
    model = SmallCNN(width=4)
    model.train()
    model(images(16, seed=1))  # move BN running stats away from their initial values
    model.eval()
    root = tmp_path_factory.mktemp("tiny")
    paths = {
        f: root / name for f, name in zip(FORMATS, ("w.pt", "ts.pt", "prog.pt2", "run.ckpt"), strict=True)
    }
    torch.save(model.state_dict(), paths["state_dict"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, images(2)), paths["torchscript"])
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (images(2),), dynamic_shapes=({0: batch},)), paths["export"])
    hparams = {"model": spec("smallcnn", width=4), **DATA}
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hparams, "epoch": 3}, paths["lightning"])
    return model, paths


def load_tiny(tiny, fmt: str) -> nn.Module:
    _, paths = tiny
    return load_checkpoint(paths[fmt], arch_builder=lambda: SmallCNN(width=4))


# --- reference checkpoints -------------------------------------------------------------------


def test_smallcnn_layout_matches_reference_state_dict(shared):
    state = torch.load(shared("models/smallcnn_std.state_dict.pt"), weights_only=True)
    expected = {k: v.shape for k, v in SmallCNN(width=32).state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == expected
    SmallCNN(width=32).load_state_dict(state, strict=True)


def test_reference_formats_give_the_same_outputs(reference):
    x = images(32)
    with torch.no_grad():
        outputs = {fmt: model(x) for fmt, model in reference.items()}
    for fmt in ("torchscript", "export"):
        torch.testing.assert_close(outputs[fmt], outputs["state_dict"], atol=1e-4, rtol=0)
        assert torch.equal(outputs[fmt].argmax(1), outputs["state_dict"].argmax(1))
    params = {describe_model(m)["params"] for m in reference.values()}
    assert params == {describe_model(SmallCNN())["params"]}


def test_reference_input_gradients_agree(reference):
    grads = {fmt: input_grad(model, images(4)) for fmt, model in reference.items()}
    assert grads["state_dict"].abs().sum() > 0
    for fmt in ("torchscript", "export"):
        torch.testing.assert_close(grads[fmt], grads["state_dict"], atol=1e-4, rtol=1e-3)


def test_state_dict_normalization_comes_from_the_file(shared):
    path = shared("models/smallcnn_std.state_dict.pt")
    data = {**DATA, "mean": [0.5] * 3, "std": [0.5] * 3}
    model = build_model({**spec("smallcnn"), "checkpoint": str(path)}, **data)
    torch.testing.assert_close(model.norm.mean.flatten(), torch.tensor(CIFAR10_MEAN))
    assert not model.training


# --- every format, on a small locally saved model --------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_loaded_format_matches_source_model(tiny, fmt):
    source, _ = tiny
    model = load_tiny(tiny, fmt)
    assert not model.training
    x = images(5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_input_gradients_flow_through_loaded_format(tiny, fmt):
    source, _ = tiny
    grad = input_grad(load_tiny(tiny, fmt), images(3))
    assert grad.shape == (3, 3, 32, 32) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    torch.testing.assert_close(grad, input_grad(source, images(3)), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mode_switches_are_safe_on_loaded_format(tiny, fmt):
    model = load_tiny(tiny, fmt)
    was_training = model.training
    model.eval()
    assert not model.training
    model.train()
    model.train(was_training)  # what attacks do to restore the caller's mode
    assert model.training == was_training
    assert model(images(1)).shape == (1, 10)  # batch size 1 also works with the dynamic batch dim


def test_exported_module_has_fixed_eval_mode(tiny):
    model = load_tiny(tiny, "export")
    assert isinstance(model, ExportedModule)
    before = model(images(4))
    model.train()
    assert not model.training
    torch.testing.assert_close(model(images(4)), before)
    assert describe_model(model)["name"] == "torch.export/prog"


def test_format_is_detected_from_contents_not_suffix(tiny, tmp_path):
    _, paths = tiny
    renamed = tmp_path / "program.bin"
    renamed.write_bytes(paths["export"].read_bytes())
    assert isinstance(load_checkpoint(renamed), ExportedModule)


def test_lightning_checkpoint_rebuilds_its_architecture(tiny):
    _, paths = tiny
    model = build_model({**spec("checkpoint"), "checkpoint": str(paths["lightning"])}, **DATA)
    assert isinstance(model, SmallCNN) and model.fc.in_features == 32


def test_lightning_checkpoint_with_omegaconf_hyper_parameters(tiny, tmp_path):
    source, _ = tiny
    hparams = OmegaConf.create({"model": spec("smallcnn", width=4), **DATA})
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "hydra.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"model": hparams.model, **DATA}}, path)
    model = load_checkpoint(path)
    torch.testing.assert_close(model(images(2)), source(images(2)))


def test_self_contained_checkpoint_ignores_given_arch(tiny):
    _, paths = tiny
    model = build_model({**spec("preact_resnet18"), "checkpoint": str(paths["torchscript"])}, **DATA)
    assert describe_model(model) == {
        "name": "torchscript/SmallCNN",
        "params": describe_model(tiny[0])["params"],
    }


# --- architectures and the factory ---------------------------------------------------------


@pytest.mark.parametrize(
    ("model_spec", "in_channels", "num_classes", "size"),
    [
        (spec("smallcnn", width=8), 3, 10, 32),
        (spec("preact_resnet18"), 3, 7, 32),
        (spec("wrn28_10", depth=10, widen_factor=2, dropout=0.1), 3, 10, 32),
        (spec("timm", name="resnet18"), 1, 5, 28),
    ],
    ids=["smallcnn", "preact_resnet18", "wrn", "timm_resnet18_gray"],
)
def test_build_model_forward_shapes(model_spec, in_channels, num_classes, size):
    data = {"num_classes": num_classes, "in_channels": in_channels, "mean": [0.5] * in_channels}
    model = build_model(model_spec, **data, std=[0.25] * in_channels).eval()
    assert isinstance(model.norm, Normalize) and model.norm.mean.shape == (1, in_channels, 1, 1)
    assert model(images(2, in_channels, size)).shape == (2, num_classes)
    info = describe_model(model)
    assert info["params"] == sum(p.numel() for p in model.parameters()) > 0 and info["name"]


def test_spec_mean_and_std_override_the_data():
    model = build_model(spec("smallcnn", width=4, mean=[0.1, 0.2, 0.3], std=[1, 1, 1]), **DATA)
    torch.testing.assert_close(model.norm.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


def test_normalize():
    norm = Normalize([0.5, 0.25], [0.5, 0.25])
    assert set(norm.state_dict()) == {"mean", "std"} and norm.std.shape == (1, 2, 1, 1)
    torch.testing.assert_close(
        norm(torch.ones(1, 2, 3, 3)), torch.tensor([1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    )


@pytest.mark.parametrize("name", ["smallcnn", "preact_resnet18", "wrn28_10", "timm", "checkpoint"])
def test_conf_model_files(name):
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml"))
    assert cfg["arch"] == name and set(SPEC_KEYS) <= set(cfg)
    if name == "checkpoint":
        with pytest.raises(ConfigError, match="needs model.checkpoint=PATH"):
            build_model(cfg, **DATA)
        return
    small = {"smallcnn": {"width": 4}, "wrn28_10": {"depth": 10, "widen_factor": 1}}.get(name, {})
    assert build_model({**cfg, **small}, **DATA).eval()(images(1)).shape == (1, 10)


def test_register_model(monkeypatch):
    monkeypatch.setattr(factory, "MODELS", dict(MODELS))

    def linear(num_classes, in_channels, mean, std, hidden=4):
        return nn.Sequential(Normalize(mean, std), nn.Flatten(), nn.Linear(in_channels * 4, num_classes))

    register_model("linear", linear)
    assert build_model(spec("linear"), **DATA)(images(2, size=2)).shape == (2, 10)
    with pytest.raises(ConfigError, match="valid keys: arch, checkpoint, mean, std, hidden"):
        build_model(spec("linear", depth=3), **DATA)
    with pytest.raises(ValueError, match="already registered"):
        register_model("linear", linear)


def test_pretrained_download_is_skipped_when_a_checkpoint_follows(monkeypatch, tiny):
    seen = {}

    def fake_timm(
        name, num_classes, in_channels, mean, std, pretrained=False, drop_rate=0.0, drop_path_rate=0.0
    ):
        seen["pretrained"] = pretrained
        return SmallCNN(num_classes, in_channels, width=4, mean=mean, std=std)

    monkeypatch.setitem(MODELS, "timm", fake_timm)
    cfg = {**spec("timm", name="resnet18", pretrained=True), "checkpoint": str(tiny[1]["state_dict"])}
    build_model(cfg, **DATA)
    assert seen == {"pretrained": False}


# --- errors ----------------------------------------------------------------------------------


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist; pass an existing TorchScript \(\.pt\)"):
        build_model({**spec("checkpoint"), "checkpoint": str(tmp_path / "nope.pt")}, **DATA)


def test_directory_checkpoint_path(tmp_path):
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", "zip"], ids=["empty", "garbage", "truncated"]
)
def test_corrupt_checkpoint(tiny, tmp_path, content):
    if content == "zip":
        content = tiny[1]["state_dict"].read_bytes()[:2000]
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is damaged or not a PyTorch checkpoint"):
        load_checkpoint(path, arch_builder=SmallCNN)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(SmallCNN(width=4), path)
    with pytest.raises(CheckpointError, match="robustlit.models.cifar.SmallCNN, which is unsafe to load"):
        load_checkpoint(path)


def test_state_dict_without_arch(tiny):
    with pytest.raises(
        CheckpointError, match=r"is a state_dict and holds no architecture; choose .* model=<"
    ):
        build_model({**spec("checkpoint"), "checkpoint": str(tiny[1]["state_dict"])}, **DATA)


def test_state_dict_with_wrong_arch(tiny):
    cfg = {**spec("preact_resnet18"), "checkpoint": str(tiny[1]["state_dict"])}
    with pytest.raises(
        CheckpointError, match=r"does not fit PreActResNet18: missing \[conv1.weight.*unexpected"
    ):
        build_model(cfg, **DATA)


def test_state_dict_with_wrong_width(tiny):
    cfg = {**spec("smallcnn", width=8), "checkpoint": str(tiny[1]["state_dict"])}
    with pytest.raises(
        CheckpointError, match=r"shape \(file vs model\) \[features.0.0.weight \(4, 3, 3, 3\)"
    ):
        build_model(cfg, **DATA)


def test_exported_program_rejects_wrong_input_shape(tiny):
    with pytest.raises(InputShapeError, match=r"rejects inputs of shape \(2, 1, 32, 32\)"):
        load_tiny(tiny, "export")(images(2, channels=1))


@pytest.mark.parametrize(
    ("bad_spec", "message"),
    [
        (spec("resnet9000"), "model.arch=resnet9000 is unknown; choose one of preact_resnet18, smallcnn"),
        (spec("smallcnn", depth=28), "model.depth is not an option of model.arch=smallcnn; valid keys"),
        (spec("timm"), "model.arch=timm needs model.name="),
        (spec("timm", name="no_such_net"), "name='no_such_net' is not a timm model"),
        (spec("smallcnn", width=0), "model.arch=smallcnn: width=0 must be a positive integer"),
        (spec("wrn28_10", depth=27), "depth=27 must be 6n"),
        (spec("smallcnn", mean=[0.5]), r"model.mean=\[0.5\] has 1 values but the data has 3 channels"),
        (spec("checkpoint", width=32), "model.width has no effect with model.arch=checkpoint"),
        ({"width": 32}, "model.arch is not set; choose an architecture with model=<"),
    ],
    ids=["unknown_arch", "unknown_kwarg", "missing_kwarg", "unknown_timm", "bad_width", "bad_depth",
         "mean_channels", "option_on_checkpoint", "no_arch"],
)  # fmt: skip
def test_config_errors(bad_spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(bad_spec, **DATA)
