"""Write a tuning result as a ready ``conf/recipe/*.yaml`` file, and plot the optimization history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def recipe_yaml(name: str, regularizers: list[str], params: dict[str, Any], comment: str) -> str:
    """A ``@package _global_`` recipe that selects ``regularizers`` and sets the tuned ``params``.

    Args:
        name: Recipe name (``recipe_name`` in the run config).
        regularizers: Regularizer group options, as in ``override /regularizer: [...]``.
        params: Tuned values by dotted config key.
        comment: One line describing where the values come from; also the recipe's ``recipe_description``.

    Example:
        >>> print(recipe_yaml("tuned", ["mixup"], {"regularizer.mixup.mixup_alpha": 0.3}, "test"))
        # @package _global_
        # test
        defaults:
          - override /regularizer: [mixup]
        recipe_name: tuned
        recipe_description: test
        regularizer:
          mixup:
            mixup_alpha: 0.3
        <BLANKLINE>
    """
    values = OmegaConf.create({"recipe_name": name, "recipe_description": comment})
    for path, value in sorted(params.items()):
        OmegaConf.update(values, path, value, force_add=True)
    header = ["# @package _global_", f"# {comment}", "defaults:",
              f"  - override /regularizer: [{', '.join(regularizers)}]"]
    return "\n".join(header) + "\n" + OmegaConf.to_yaml(values)


def plot_history(trials: list[dict[str, Any]], baseline: float | None, direction: str, path: Path) -> Path:
    """Objective of every finished trial, the best so far, pruned trials and the baseline, as a PNG.

    Args:
        trials: ``{"number", "state", "value", "feasible"}`` per trial (state ``COMPLETE``/``PRUNED``/…);
            only complete trials' values are drawn.
        baseline: Objective of the baseline run, drawn as a dashed line.
        direction: ``maximize`` or ``minimize`` (for the best-so-far line).
        path: PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    better = max if direction == "maximize" else min
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    feasible = [t for t in done if t["feasible"]]
    infeasible = [t for t in done if not t["feasible"]]
    axes.scatter([t["number"] for t in feasible], [t["value"] for t in feasible], label="trial", zorder=3)
    if infeasible:
        axes.scatter([t["number"] for t in infeasible], [t["value"] for t in infeasible], marker="x", color="grey",
                     label="infeasible (constraint)", zorder=3)
    pruned = [t["number"] for t in trials if t["state"] == "PRUNED"]
    if pruned:
        # pruned trials have no objective: mark them along the bottom edge
        axes.scatter(pruned, [0.03] * len(pruned), marker="v", color="tab:red", label="pruned", zorder=3,
                     transform=axes.get_xaxis_transform())
    best, line = None, []
    for trial in sorted(feasible, key=lambda t: t["number"]):
        best = trial["value"] if best is None else better(best, trial["value"])
        line.append((trial["number"], best))
    if line:
        line.append((max(t["number"] for t in trials), best))
        axes.step(*zip(*line, strict=True), where="post", color="tab:green", label="best so far")
    if baseline is not None:
        axes.axhline(baseline, linestyle="--", color="black", label="baseline")
    axes.set_xlabel("trial")
    axes.set_ylabel("objective")
    axes.set_title("robustlit-tune: optimization history")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
