"""The Hydra apps end to end: real Trainer runs on digits, reports, multirun, determinism, and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlit.cli.app import config_dir, eval_main, train_main
from robustlit.cli.eval import evaluate
from robustlit.cli.overrides import check_group_overrides
from robustlit.cli.train import train
from robustlit.errors import ConfigError
from robustlit.models import SmallCNN
from robustlit.reporting import read_report

BIN = Path(sys.executable).parent
FAST_EVAL = ["trainer=debug", "data.image_size=16", "evaluation.adversarial.steps=3"]
FAST = [*FAST_EVAL, "model.width=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One debug run of the PGD-AT + label smoothing recipe, shared by the tests below."""
    from hydra import compose, initialize_config_dir

    output = tmp_path_factory.mktemp("train")
    with initialize_config_dir(str(config_dir()), version_base=None):
        cfg = compose("train", overrides=[*FAST, "recipe=pgd_at_ls", f"output_dir={output}"])
    report, path = train(cfg, verbose=False)
    return report, path, output


def test_train_writes_the_report_contract(trained):
    report, path, output = trained
    data = json.loads(path.read_text())
    assert path == output / "robustness_report.json"
    assert data["run"]["type"] == "train" and data["run"]["name"] == "pgd_at_ls" and data["run"]["seed"] == 0
    assert data["run"]["config"]["regularizer"]["adversarial_training"]["eps"] == "8/255"
    assert data["model"] == {
        "name": "smallcnn",
        "params": data["model"]["params"],
        "checkpoint": str(output / "checkpoints" / "last.ckpt"),
    }
    assert data["model"]["params"] > 1000
    assert data["data"]["name"] == "digits" and len(data["data"]["fingerprint"]) == 64
    clean = report.find("clean", "accuracy")[0].value
    robust = [m.value for m in report.find("adversarial", "robust_accuracy", attack="pgd")]
    assert [m.context["eps"] for m in report.find("adversarial", "robust_accuracy")] == [
        round(e / 255, 7) for e in (2, 4, 8)
    ]
    assert clean >= robust[0] >= robust[1] >= robust[2]
    assert 0 <= report.find("calibration", "ece")[0].value <= 1
    assert {"fit", "suite/clean", "suite/adversarial", "suite/calibration"} <= set(report.timings)
    assert (output / "checkpoints" / "last.ckpt").is_file()
    assert (output / "logs" / "metrics.csv").is_file()


def test_eval_of_the_trained_checkpoint_reproduces_its_numbers(trained, compose_config, tmp_path):
    report, _, output = trained
    cfg = compose_config(
        "eval", [*FAST_EVAL, f"model.checkpoint={output / 'checkpoints' / 'last.ckpt'}", f"output_dir={tmp_path}"]
    )
    evaluated, _ = evaluate(cfg, verbose=False)
    assert evaluated.run.type == "evaluate"
    assert evaluated.data.fingerprint == report.data.fingerprint
    for metric in report.metrics:
        again = evaluated.find(metric.suite, metric.name, **metric.context)
        assert again and again[0].value == pytest.approx(metric.value, abs=1e-6), metric


def _final_weights(cfg) -> dict[str, torch.Tensor]:
    train(cfg, verbose=False)
    return torch.load(Path(cfg.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_same_seed_gives_identical_weights_on_cpu(compose_config, tmp_path):
    recipe = [
        *FAST[:2],
        "model.width=8",
        "regularizer=[mixup,adversarial_training]",
        "evaluation=[clean]",
        "trainer.limit_train_batches=3",
    ]
    first = _final_weights(compose_config("train", [*recipe, "seed=3", f"output_dir={tmp_path / 'a'}"]))
    second = _final_weights(compose_config("train", [*recipe, "seed=3", f"output_dir={tmp_path / 'b'}"]))
    other = _final_weights(compose_config("train", [*recipe, "seed=4", f"output_dir={tmp_path / 'c'}"]))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_multirun_writes_one_report_per_job(tmp_path):
    result = subprocess.run(
        [
            BIN / "robustlit-train",
            "-m",
            "seed=1,2",
            *FAST[:2],
            "model.width=8",
            "evaluation=[calibration]",
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reports = sorted(tmp_path.glob("*/robustness_report.json"))
    assert [read_report(p).run.seed for p in reports] == [1, 2]
    assert "report:" in result.stdout


def _run_app(main, argv, monkeypatch, capsys, tmp_path) -> str:
    monkeypatch.setattr(sys, "argv", ["prog", *argv, f"hydra.run.dir={tmp_path}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data=nope"], "unknown data option 'nope'; choose one of: cifar10, cifar100, cifar10c, colored_digits, "
                        "digits, imagefolder"),
        (["evaluation=[adversarial,robustbench]"], "unknown evaluation option 'robustbench'"),
        (["regularizer=[mixup]", "regularizer.mixup.mixup_alpha=-1", *FAST], "Mixup needs mixup_alpha > 0"),
        (["evaluation.adversarial.eps.Linf=[8/0]", *FAST], "cannot read '8/0' as a radius"),
        (["data=imagefolder"], "data.root"),
        (["data=imagefolder", "data.root=/does/not/exist"], "/does/not/exist"),
    ],
)
def test_train_input_errors_are_one_line(argv, message, monkeypatch, capsys, tmp_path):
    assert message in _run_app(train_main, argv, monkeypatch, capsys, tmp_path)


def test_eval_input_errors_are_one_line(monkeypatch, capsys, tmp_path):
    line = _run_app(eval_main, ["model.checkpoint=/no/such/model.pt"], monkeypatch, capsys, tmp_path)
    assert "model.checkpoint=/no/such/model.pt does not exist" in line
    line = _run_app(eval_main, [], monkeypatch, capsys, tmp_path)
    assert "needs model.checkpoint=PATH" in line


def test_wrong_input_shape_is_explained(monkeypatch, capsys, tmp_path):
    scripted = tmp_path / "rgb.pt"
    torch.jit.script(SmallCNN(width=4).eval()).save(str(scripted))
    line = _run_app(eval_main, [f"model.checkpoint={scripted}", *FAST_EVAL], monkeypatch, capsys, tmp_path)
    assert "expects 3-channel images but data=digits gives 1" in line and "data.channels=3" in line


def test_group_override_check_accepts_sweeps_lists_and_null():
    root = config_dir()
    check_group_overrides(
        [
            "recipe=baseline,pgd_at_ls",
            "evaluation=[adversarial,calibration]",
            "~scheduler",
            "+experiment=demo",
            "hydra/launcher=basic",
            "seed=1,2",
            "data.root=x",
            "regularizer=[]",
        ],
        root,
    )
    with pytest.raises(ConfigError, match="unknown recipe option 'trades'"):
        check_group_overrides(["recipe=baseline,trades"], root)
    with pytest.raises(ConfigError, match="write ~scheduler instead"):
        check_group_overrides(["scheduler=null"], root)


def test_compare_command_prints_both_runs(trained, tmp_path):
    _, path, _ = trained
    other = tmp_path / "copy" / "robustness_report.json"
    other.parent.mkdir()
    other.write_text(path.read_text())
    result = subprocess.run(
        [BIN / "robustlit", "compare", str(path), str(other.parent)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": str(BIN)},
    )
    assert result.returncode == 0, result.stderr
    assert "copy" in result.stdout and "+0.0000" in result.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("[]")
    result = subprocess.run([BIN / "robustlit", "compare", str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "a report must be a JSON object" in result.stderr
