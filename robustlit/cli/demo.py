"""``robustlit demo``: train a baseline and a robust recipe on the bundled digits data and compare them."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from robustlit.reporting import print_comparison

DEMO_RECIPES = ("baseline", "pgd_at_ls")


def run_demo(output_root: Path, recipes: Sequence[str] = DEMO_RECIPES, overrides: Sequence[str] = ()) -> list[Path]:
    """Train and evaluate each recipe with ``+experiment=demo``, then print them side by side.

    Args:
        output_root: Each recipe's run goes to ``output_root/<recipe>``.
        recipes: Recipes to compare; the first is the baseline of the deltas.
        overrides: Extra config overrides applied to every run.

    Returns:
        Paths of the written ``robustness_report.json`` files.

    Example:
        >>> paths = run_demo(Path("runs/demo"))  # doctest: +SKIP
    """
    from hydra import compose, initialize_config_dir

    from robustlit.cli.app import config_dir, silence_known_warnings
    from robustlit.cli.train import train

    console = Console()
    # The demo shows its own progress; Lightning's hardware banner and tips would only add noise.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    silence_known_warnings()
    reports, paths = [], []
    began = time.perf_counter()
    with initialize_config_dir(str(config_dir()), version_base=None):
        for index, recipe in enumerate(recipes, start=1):
            console.rule(f"[bold]demo {index}/{len(recipes)}: training recipe={recipe} on digits")
            cfg = compose("train", overrides=[
                "+experiment=demo", f"recipe={recipe}", f"output_dir={output_root / recipe}", *overrides,
            ])
            report, path = train(cfg, verbose=False)
            reports.append(report)
            paths.append(path)
    print_comparison(reports, names=list(recipes), console=console)
    for recipe, path in zip(recipes, paths, strict=True):
        console.print(f"{recipe:>12} report: {path}")
    console.print(f"demo finished in {time.perf_counter() - began:.0f} s")
    return paths
