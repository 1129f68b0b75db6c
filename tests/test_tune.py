"""robustlit-tune: specs, objective, pruning callback with a real Trainer, recipe output, and a digits study."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlit.cli.app import config_dir
from robustlit.errors import ConfigError
from robustlit.reporting import DataInfo, Metric, ModelInfo, Report, RunInfo
from robustlit.tuning import OptunaPruning, TuneSpec, evaluate, load_spec, plot_history, recipe_yaml, select

optuna = pytest.importorskip("optuna")


def report_with(*metrics: Metric) -> Report:
    run = RunInfo("r", "n", "train", 0, "t0", "t1", {}, None, "0.1.0")
    return Report(run, ModelInfo("m", 1), DataInfo("digits", 360, "f"), list(metrics))


REPORT = report_with(
    Metric("clean", "accuracy", 0.9),
    Metric("adversarial", "robust_accuracy", 0.6, {"attack": "pgd", "norm": "Linf", "eps": round(4 / 255, 7)}),
    Metric("adversarial", "robust_accuracy", 0.3, {"attack": "pgd", "norm": "Linf", "eps": round(8 / 255, 7)}),
    Metric("adversarial", "robust_accuracy", 0.2, {"attack": "worst_case", "norm": "Linf", "eps": round(8 / 255, 7)}),
)


def spec(**changes) -> TuneSpec:
    data = {"study": "s", "recipe": "mixup", "params": {"optimizer.lr": {"low": 0.01, "high": 0.3, "log": True}},
            "objective": {"terms": [{"metric": "clean/accuracy"}]}}
    data.update(changes)
    return TuneSpec.from_dict(data)


def test_objective_is_the_weighted_sum_with_constraint_violations() -> None:
    tuned = spec(objective={
        "terms": [{"metric": "clean/accuracy", "weight": 0.25},
                  {"metric": "adversarial/robust_accuracy", "context": {"attack": "pgd", "eps": "8/255"},
                   "weight": 0.75}],
        "constraints": [{"metric": "clean/accuracy", "min": 0.95}, {"metric": "adversarial/robust_accuracy",
                                                                   "context": {"attack": "pgd", "eps": "4/255"},
                                                                   "max": 0.5}]})
    value, violations, parts = evaluate(REPORT, tuned)
    assert value == pytest.approx(0.25 * 0.9 + 0.75 * 0.3)
    assert violations == pytest.approx([0.05, 0.1])
    assert parts["adversarial/robust_accuracy[attack=pgd,eps=0.0313725]"] == 0.3


def test_metric_selection_errors_list_the_available_contexts() -> None:
    with pytest.raises(ConfigError, match=r"2 report metrics adversarial/robust_accuracy match .*add or fix context"):
        select(REPORT, "adversarial/robust_accuracy", {"eps": round(8 / 255, 7)})
    with pytest.raises(ConfigError, match=r"no report metrics adversarial/robust_accuracy .*attack=pgd,norm=Linf"):
        select(REPORT, "adversarial/robust_accuracy", {"eps": 0.5})
    with pytest.raises(ConfigError, match="must be suite/name"):
        spec(objective={"terms": [{"metric": "accuracy"}]})


def test_spec_validation_names_the_option() -> None:
    with pytest.raises(ConfigError, match="tune sampler='cmaes' is not one of: tpe, gp, random"):
        spec(sampler="cmaes")
    with pytest.raises(ConfigError, match="params.optimizer.lr has log: true, so low must be > 0"):
        spec(params={"optimizer.lr": {"low": 0.0, "high": 1.0, "log": True}})
    with pytest.raises(ConfigError, match="invalid tune spec"):
        spec(budget=3)
    with pytest.raises(ConfigError, match="no tune spec 'nope'; choose one of: .*mixup"):
        load_spec("nope", config_dir())


@pytest.mark.parametrize("path", sorted((config_dir() / "tune").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_specs_match_their_recipes(path: Path, compose_config) -> None:
    tuned = load_spec(str(path), config_dir())
    cfg = compose_config("train", [f"recipe={tuned.recipe}", *tuned.overrides, "output_dir=."])
    for param in tuned.params:
        assert OmegaConf.select(cfg, param.path, default="<absent>") != "<absent>", param.path
    compose_config("train", [*tuned.baseline, "output_dir=."])


def test_recipe_file_is_a_ready_recipe(tmp_path: Path, compose_config) -> None:
    (tmp_path / "recipe").mkdir()
    text = recipe_yaml("tuned_mixup", ["mixup", "label_smoothing"],
                       {"regularizer.mixup.mixup_alpha": 0.31, "optimizer.lr": 0.07}, "tuned for a test")
    (tmp_path / "recipe" / "tuned_mixup.yaml").write_text(text)
    cfg = compose_config("train", [f"hydra.searchpath=[file://{tmp_path}]", "recipe=tuned_mixup", "output_dir=."])
    assert sorted(cfg.regularizer) == ["label_smoothing", "mixup"]
    assert cfg.regularizer.mixup.mixup_alpha == 0.31 and cfg.optimizer.lr == 0.07
    assert cfg.name == "tuned_mixup" and cfg.recipe_description == "tuned for a test"


def test_history_plot(tmp_path: Path) -> None:
    rows = [{"number": 0, "state": "COMPLETE", "value": 0.4, "feasible": True},
            {"number": 1, "state": "PRUNED", "value": None, "feasible": True},
            {"number": 2, "state": "COMPLETE", "value": 0.6, "feasible": False}]
    path = plot_history(rows, 0.3, "maximize", tmp_path / "history.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Quality(L.LightningModule):
    """A real tiny classifier whose validation accuracy is scaled by ``quality`` (a stand-in for a good recipe)."""

    def __init__(self, quality: float) -> None:
        super().__init__()
        self.quality = quality
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        accuracy = (self.layer(x).argmax(1) == y).float().mean()
        self.log("val/acc", self.quality * (0.5 + 0.5 * accuracy) * (self.current_epoch + 1) / 4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def run_study(pruner, qualities: list[float]) -> tuple[list, list[int | None]]:
    data = TensorDataset(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 2)
    # a fixed name: Hyperband assigns trials to brackets by hashing the study name and trial number
    study = optuna.create_study(study_name="pruning-test", direction="maximize", pruner=pruner)
    pruned_at = []

    def objective(trial):
        quality = qualities[trial.number]
        torch.manual_seed(trial.number)
        callback = OptunaPruning(trial, "val/acc", "max", step_offset=1)
        trainer = L.Trainer(max_epochs=4, callbacks=[callback], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        try:
            trainer.fit(Quality(quality), DataLoader(data, batch_size=16), DataLoader(data, batch_size=16))
        finally:
            pruned_at.append(callback.pruned_at)
        return float(trainer.callback_metrics["val/acc"])

    study.optimize(objective, n_trials=len(qualities))
    return study.trials, pruned_at


@pytest.mark.parametrize("pruner", [optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
                                    optuna.pruners.HyperbandPruner(min_resource=1, max_resource=4, reduction_factor=2)],
                         ids=["sha", "hyperband"])
def test_pruning_callback_stops_weak_trials(pruner) -> None:
    trials, pruned_at = run_study(pruner, [1.0, 0.9, 0.2, 0.1, 0.95])
    states = [t.state.name for t in trials]
    assert states[0] == "COMPLETE"
    assert states[3] == "PRUNED"  # the weakest, after strong trials set the bar
    pruned = [i for i, s in enumerate(states) if s == "PRUNED"]
    # a pruned trial stopped training at the epoch it was pruned; at least one well before the end
    assert all(max(trials[i].intermediate_values) == pruned_at[i] + 1 for i in pruned)
    assert min(pruned_at[i] for i in pruned) == 0
    # each trial reports once per finished epoch, at steps 1, 2, ... (the resource both pruners count)
    assert sorted(trials[0].intermediate_values) == [1, 2, 3, 4]


@pytest.mark.slow
def test_digits_study_beats_the_baseline_and_prunes(tmp_path: Path) -> None:
    from robustlit.cli.tune import tune

    study = spec(
        study="digits_test", baseline=["recipe=baseline", "optimizer.lr=0.002"], sampler="tpe", pruner="sha",
        n_trials=5, params={"optimizer.lr": {"low": 0.003, "high": 0.3, "log": True},
                            "regularizer.mixup.mixup_alpha": {"low": 0.05, "high": 0.5, "log": True}},
        objective={"terms": [{"metric": "clean/accuracy", "weight": 0.5},
                             {"metric": "adversarial/robust_accuracy", "context": {"eps": "2/255"}, "weight": 0.5}],
                   "constraints": [{"metric": "clean/accuracy", "min": 0.05}]},
    )
    overrides = ["trainer.max_epochs=3", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2",
                 "trainer.enable_model_summary=false", "+trainer.enable_progress_bar=false", "data.image_size=16",
                 "data.batch_size=64", "data.limit_test=128", "model.width=8", "scheduler=cosine",
                 "evaluation=[adversarial]", "evaluation.adversarial.steps=3",
                 "evaluation.adversarial.eps.Linf=[2/255]"]
    storage = f"sqlite:///{tmp_path / 'project.db'}"
    result = tune(study, tmp_path / "out", overrides, storage=storage)
    assert result.best_value > result.baseline_value
    assert result.n_pruned >= 1 and result.n_complete + result.n_pruned == 5
    loaded = optuna.load_study(study_name="digits_test", storage=storage)  # the study lives in the given DB
    assert loaded.user_attrs["baseline"]["value"] == result.baseline_value
    summary = json.loads(result.summary.read_text())
    assert summary["best_trial"] == result.best_trial and summary["best_params"] == result.best_params
    recipe = yaml.safe_load(result.recipe.read_text())
    assert recipe["optimizer"]["lr"] == result.best_params["optimizer.lr"]
    assert recipe["defaults"] == [{"override /regularizer": ["mixup"]}]
    assert result.plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_samplers_respect_the_constraints(sampler: str) -> None:
    from robustlit.cli.tune import make_sampler

    tuned = spec(sampler=sampler, n_trials=6, params={"x": {"low": 0.0, "high": 1.0}},
                 objective={"terms": [{"metric": "clean/accuracy"}], "constraints": [{"metric": "clean/accuracy",
                                                                                       "max": 0.5}]})
    study = optuna.create_study(direction="maximize", sampler=make_sampler(tuned))

    def objective(trial):
        x = tuned.params[0].suggest(trial)
        trial.set_user_attr("constraints", [tuned.constraints[0].violation(x)])
        return x

    study.optimize(objective, n_trials=tuned.n_trials)
    # the sampler saw each trial's violations (what TPE and GP use to favour the feasible region)
    assert all(list(t.system_attrs["constraints"]) == t.user_attrs["constraints"] for t in study.trials)
    assert any(t.system_attrs["constraints"][0] > 0 for t in study.trials)
