"""``robustlit-tune``: search regularizer hyperparameters with optuna and write the best recipe.

Example:
    robustlit-tune mixup --trials 30 --sampler gp --pruner hyperband trainer.max_epochs=20
    robustlit-tune conf/tune/pgd_at_ls.yaml --storage postgresql://user@db/robustlit_tuning
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlit.errors import ConfigError, RobustlitError
from robustlit.tuning.space import PRUNERS, SAMPLERS, TuneSpec


@dataclass
class TuneResult:
    """What a tuning run produced."""

    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    baseline_value: float
    recipe: Path
    plot: Path
    summary: Path
    n_complete: int
    n_pruned: int


def make_sampler(spec: TuneSpec) -> Any:
    """The optuna sampler named by ``spec.sampler``, seeded and aware of the constraints.

    Example:
        >>> spec = TuneSpec.from_dict({"study": "s", "sampler": "gp", "objective": {"terms": [{"metric": "a/b"}]},
        ...                            "params": {"optimizer.lr": {"low": 0.01, "high": 0.1}}})
        >>> type(make_sampler(spec)).__name__
        'GPSampler'
    """
    import optuna

    startup = max(2, min(10, spec.n_trials // 3))
    constraints = _constraints_func(len(spec.constraints)) if spec.constraints else None
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=startup, multivariate=True,
                                          constraints_func=constraints)
    if spec.sampler == "gp":
        return optuna.samplers.GPSampler(seed=spec.seed, n_startup_trials=startup, constraints_func=constraints)
    return optuna.samplers.RandomSampler(seed=spec.seed)


def make_pruner(spec: TuneSpec, max_epochs: int) -> Any:
    """The optuna pruner named by ``spec.pruner``; its resource is the number of finished epochs.

    Example:
        >>> spec = TuneSpec.from_dict({"study": "s", "pruner": "sha", "objective": {"terms": [{"metric": "a/b"}]},
        ...                            "params": {"optimizer.lr": {"low": 0.01, "high": 0.1}}})
        >>> type(make_pruner(spec, max_epochs=9)).__name__
        'SuccessiveHalvingPruner'
    """
    import optuna

    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)
    if spec.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _constraints_func(count: int) -> Any:
    def constraints(trial: Any) -> list[float]:
        # pruned or failed trials never reached the report; count them as feasible placeholders
        return list(trial.user_attrs.get("constraints", [0.0] * count))

    return constraints


def override_value(value: Any) -> str:
    """A Python value as a Hydra override value.

    Example:
        >>> override_value(0.5), override_value(True), override_value("Linf")
        ('0.5', 'true', "'Linf'")
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def tune(
    spec: TuneSpec,
    output: Path,
    train_overrides: Sequence[str] = (),
    storage: str | None = None,
    recipe_name: str | None = None,
) -> TuneResult:
    """Run ``spec``'s study (resuming it if the storage has it), compare with the baseline and write the recipe.

    Args:
        spec: Search space, objective, sampler, pruner and budget.
        output: Folder for trial runs, the recipe, the plot and ``summary.json``.
        train_overrides: Train overrides for every trial and the baseline (e.g. the data or the epoch budget).
        storage: SQLAlchemy URL of the study (SQLite, PostgreSQL …); default ``$ROBUSTLIT_TUNE_STORAGE`` or
            ``sqlite:///<output>/optuna.db``.
        recipe_name: Name of the written recipe; ``tuned_<study>`` by default.

    Returns:
        Best trial, baseline and the written files.

    Example:
        >>> result = tune(load_spec("mixup", config_dir()), Path("runs/tune/mixup"))  # doctest: +SKIP
    """
    import optuna
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robustlit.cli.app import config_dir
    from robustlit.cli.overrides import check_group_overrides
    from robustlit.cli.train import train
    from robustlit.tuning import OptunaPruning, evaluate, plot_history, recipe_yaml

    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    storage = storage or os.environ.get("ROBUSTLIT_TUNE_STORAGE") or f"sqlite:///{output / 'optuna.db'}"
    base = [f"recipe={spec.recipe}", *spec.overrides, *train_overrides]
    check_group_overrides([*base, *spec.baseline], config_dir())
    with initialize_config_dir(str(config_dir()), version_base=None):
        probe = compose("train", overrides=[*base, f"output_dir={output}"])
        missing = [p.path for p in spec.params if OmegaConf.select(probe, p.path, default=_ABSENT) is _ABSENT]
        if missing:
            raise ConfigError(f"tune params {', '.join(missing)} are not options of recipe={spec.recipe}; "
                              "check the keys against `robustlit-train --cfg job`")
        max_epochs = int(probe.trainer.max_epochs)
        study = optuna.create_study(
            study_name=spec.study, storage=storage, direction=spec.direction, sampler=make_sampler(spec),
            pruner=make_pruner(spec, max_epochs), load_if_exists=True,
        )
        if "baseline" not in study.user_attrs:
            cfg = compose("train", overrides=[*spec.baseline, *spec.overrides, *train_overrides,
                                              f"output_dir={output / 'baseline'}"])
            report, path = train(cfg, verbose=False)
            value, violations, parts = evaluate(report, spec)
            study.set_user_attr("baseline", {"value": value, "violations": violations, "parts": parts,
                                              "report": str(path)})

        def objective(trial: Any) -> float:
            values = {param.path: param.suggest(trial) for param in spec.params}
            overrides = [*base, *(f"{path}={override_value(v)}" for path, v in values.items()),
                         f"output_dir={output / 'trials' / f'{trial.number:04d}'}"]
            cfg = compose("train", overrides=overrides)
            report, path = train(cfg, verbose=False, callbacks=[OptunaPruning(trial, spec.prune_on, spec.prune_mode,
                                                                              step_offset=1)])
            value, violations, parts = evaluate(report, spec)
            trial.set_user_attr("constraints", violations)
            trial.set_user_attr("parts", parts)
            trial.set_user_attr("report", str(path))
            trial.set_user_attr("regularizers", sorted(report.run.config.get("regularizer") or {}))
            return value

        study.optimize(objective, n_trials=spec.n_trials, timeout=spec.timeout_s)
    return _write_outputs(study, spec, output, recipe_name or f"tuned_{spec.study}", plot_history, recipe_yaml)


def _write_outputs(study: Any, spec: TuneSpec, output: Path, name: str, plot_history: Any,
                   recipe_yaml: Any) -> TuneResult:
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE]
    feasible = [t for t in complete if all(c <= 0 for c in t.user_attrs.get("constraints", []))]
    baseline = study.user_attrs["baseline"]
    if not feasible:
        raise RobustlitError(f"none of the {len(complete)} finished trials of study {spec.study} met the constraints; "
                             "relax objective.constraints or widen the search space")
    pick = max if spec.direction == "maximize" else min
    best = pick(feasible, key=lambda t: t.value)
    comment = (f"robustlit-tune study {spec.study}, trial {best.number}: objective {best.value:.4f} "
               f"({spec.direction}; baseline {baseline['value']:.4f})")
    recipe = output / "recipe" / f"{name}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(recipe_yaml(name, best.user_attrs["regularizers"], dict(best.params), comment))
    rows = [{"number": t.number, "state": t.state.name, "value": t.value if t.state == states.COMPLETE else None,
             "feasible": all(c <= 0 for c in t.user_attrs.get("constraints", []))} for t in trials]
    plot = plot_history(rows, baseline["value"], spec.direction, output / "optimization_history.png")
    pruned = sum(t.state == states.PRUNED for t in trials)
    summary = output / "summary.json"
    summary.write_text(json.dumps({
        "study": spec.study, "direction": spec.direction, "best_trial": best.number, "best_value": best.value,
        "best_params": best.params, "best_parts": best.user_attrs.get("parts"), "baseline": baseline,
        "trials": rows, "recipe": str(recipe), "plot": str(plot),
    }, indent=2))
    return TuneResult(best.value, dict(best.params), best.number, baseline["value"], recipe, plot, summary,
                      len(complete), pruned)


_ABSENT = object()


def build_parser() -> argparse.ArgumentParser:
    """The ``robustlit-tune`` argument parser.

    Example:
        >>> build_parser().parse_intermixed_args(["mixup", "--trials", "5", "trainer.max_epochs=3"]).overrides
        ['trainer.max_epochs=3']
    """
    parser = argparse.ArgumentParser(prog="robustlit-tune", description="Tune a recipe's hyperparameters with optuna.")
    parser.add_argument("spec", help="a conf/tune/ name (e.g. mixup) or a YAML file")
    parser.add_argument("--trials", type=int, help="trials in this invocation (default: the spec's n_trials)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--sampler", choices=SAMPLERS, help="tpe, gp (Bayesian) or random")
    parser.add_argument("--pruner", choices=PRUNERS, help="hyperband, sha (successive halving), median or none")
    parser.add_argument("--study", help="study name (default: the spec's)")
    parser.add_argument("--storage", help="SQLAlchemy URL of the study (default: SQLite in the output folder)")
    parser.add_argument("--output", help="output folder (default: runs/tune/<study>)")
    parser.add_argument("--recipe-name", help="name of the written recipe (default: tuned_<study>)")
    parser.add_argument("--seed", type=int, help="sampler seed")
    parser.add_argument("overrides", nargs="*", help="train overrides for every trial, e.g. trainer.max_epochs=5")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of ``robustlit-tune``."""
    from robustlit.cli.app import config_dir, exit_on_user_error, silence_known_warnings
    from robustlit.tuning.space import load_spec

    args = build_parser().parse_intermixed_args(argv)

    def run() -> None:
        spec = load_spec(args.spec, config_dir())
        changes = {"n_trials": args.trials, "timeout_s": args.timeout, "sampler": args.sampler,
                   "pruner": args.pruner, "study": args.study, "seed": args.seed}
        spec = TuneSpec(**{**spec.__dict__, **{k: v for k, v in changes.items() if v is not None}})
        silence_known_warnings()
        # one line per trial is enough: Lightning's hardware banner and tips repeat on every trial
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
        result = tune(spec, Path(args.output or f"runs/tune/{spec.study}"), args.overrides, args.storage,
                      args.recipe_name)
        print(f"best trial {result.best_trial}: objective {result.best_value:.4f} (baseline "
              f"{result.baseline_value:.4f}); {result.n_complete} complete, {result.n_pruned} pruned")
        print(f"params: {json.dumps(result.best_params)}")
        print(f"recipe: {result.recipe}  (use: robustlit-train hydra.searchpath=[file://{result.recipe.parent.parent}] "
              f"recipe={result.recipe.stem}, or copy it to conf/recipe/)")
        print(f"history: {result.plot}")

    exit_on_user_error("robustlit-tune")(run)()


if __name__ == "__main__":
    main()
