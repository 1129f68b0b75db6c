"""`robustlit-train -m …`: a local multirun sweep writes one report per (recipe, seed) point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["trainer=debug", "evaluation=[]", "data.image_size=16", "model.width=8", "scheduler=cosine"]


def sweep(tmp_path: Path, points: list[str]) -> list[dict]:
    program = Path(sys.executable).with_name("robustlit-train")
    result = subprocess.run([str(program), "-m", *points, *TINY, f"hydra.sweep.dir={tmp_path}"],
                            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*/robustness_report.json"))]


def test_multirun_over_recipes_and_seeds(tmp_path: Path) -> None:
    reports = sweep(tmp_path, ["recipe=baseline,mixup", "seed=1,2"])
    points = sorted((r["run"]["config"]["recipe_name"], r["run"]["seed"]) for r in reports)
    assert points == [("baseline", 1), ("baseline", 2), ("mixup", 1), ("mixup", 2)]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == [
        "0_baseline_seed1", "1_baseline_seed2", "2_mixup_seed1", "3_mixup_seed2"]
    mixup = [r for r in reports if r["run"]["config"]["recipe_name"] == "mixup"]
    assert all(list(r["run"]["config"]["regularizer"]) == ["mixup"] for r in mixup)
    assert all(r["run"]["packages"]["torch"] for r in reports)  # the reproducibility record of every run


@pytest.mark.slow
def test_the_documented_sweep(tmp_path: Path) -> None:
    reports = sweep(tmp_path, ["recipe=baseline,adversarial_trades", "seed=1,2,3"])
    points = sorted((r["run"]["config"]["recipe_name"], r["run"]["seed"]) for r in reports)
    assert points == [(recipe, seed) for recipe in ("adversarial_trades", "baseline") for seed in (1, 2, 3)]
