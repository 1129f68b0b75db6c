"""Auto-recipe tuning with optuna: search spaces, objectives over report metrics, pruning, recipe output."""

from robustlit.tuning.objective import evaluate, select
from robustlit.tuning.pruning import OptunaPruning
from robustlit.tuning.recipe import plot_history, recipe_yaml
from robustlit.tuning.space import Constraint, Param, Term, TuneSpec, load_spec

__all__ = [
    "Constraint", "OptunaPruning", "Param", "Term", "TuneSpec", "evaluate", "load_spec", "plot_history",
    "recipe_yaml", "select",
]
