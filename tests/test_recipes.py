"""Every recipe template is machine-readable, composes, and trains for a debug run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from robustlit.cli.app import config_dir
from robustlit.cli.build import build_section
from robustlit.cli.train import train

RECIPES = sorted(path.stem for path in (config_dir() / "recipe").glob("*.yaml"))
ISSUE_RECIPES = {
    "baseline", "mixup_sam_ls", "adversarial_trades", "flat_minima_sam_swa", "augmix_corruption", "dro_irm",
    "mixup_sam_trades",
}
FAST = ["trainer=debug", "data.image_size=16", "model.width=8", "trainer.limit_train_batches=2"]
REPRESENTATIVE = "mixup_sam_ls"
OPTIMIZATION_AND_DISTRIBUTIONAL = ["sam", "asam", "swa", "ema", "swag", "cvar_dro", "chi2_dro", "group_dro", "irm",
                                   "vrex"]


def test_the_issue_templates_exist():
    assert set(RECIPES) >= ISSUE_RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_template_is_machine_readable(recipe):
    text = (config_dir() / "recipe" / f"{recipe}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    data = yaml.safe_load(text)
    assert data["recipe_name"] == recipe
    description = data["recipe_description"]
    assert isinstance(description, str) and 20 < len(description) < 200 and "\n" not in description


def _listed_regularizers(recipe: str) -> list[str]:
    defaults = yaml.safe_load((config_dir() / "recipe" / f"{recipe}.yaml").read_text()).get("defaults", [])
    return next((entry["override /regularizer"] for entry in defaults if "override /regularizer" in entry), [])


@pytest.mark.parametrize("recipe", RECIPES)
def test_template_composes_and_builds_its_regularizers(recipe, compose_config, tmp_path):
    cfg = compose_config("train", [f"recipe={recipe}", "trainer=debug", f"output_dir={tmp_path}"])
    assert cfg.name == recipe and cfg.recipe_description
    assert list(cfg.get("regularizer") or {}) == _listed_regularizers(recipe)
    callbacks = build_section(cfg, "regularizer")
    assert len(callbacks) == len(_listed_regularizers(recipe))


def _run(recipe: str, compose_config, tmp_path: Path):
    overrides = [f"recipe={recipe}", *FAST, f"output_dir={tmp_path}"]
    if recipe != "dro_irm":  # it picks its own group-annotated data and the groups suite
        overrides.append("evaluation=[clean]")
    report, path = train(compose_config("train", overrides), verbose=False)
    assert path.is_file() and report.run.name == recipe
    assert report.find("clean", "accuracy")
    return report


def test_representative_template_trains(compose_config, tmp_path):
    report = _run(REPRESENTATIVE, compose_config, tmp_path)
    assert set(report.run.config["regularizer"]) == {"label_smoothing", "mixup", "sam"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [r for r in RECIPES if r != REPRESENTATIVE])
def test_every_template_trains(recipe, compose_config, tmp_path):
    report = _run(recipe, compose_config, tmp_path)
    if recipe == "dro_irm":
        assert report.find("groups", "worst_group_accuracy")


@pytest.mark.parametrize("name", OPTIMIZATION_AND_DISTRIBUTIONAL)
def test_regularizer_config_builds(name, compose_config):
    cfg = compose_config("train", [f"regularizer=[{name}]"])
    (callback,) = build_section(cfg, "regularizer")
    assert type(callback).__module__.startswith(("robustlit.callbacks", "lightning.pytorch.callbacks"))

