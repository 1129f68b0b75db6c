"""Tuning specs (``conf/tune/*.yaml``): the search space over config options, the objective and the study setup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlit.errors import ConfigError

SAMPLERS = ("tpe", "gp", "random")
PRUNERS = ("hyperband", "sha", "median", "none")
DIRECTIONS = ("maximize", "minimize")


@dataclass
class Param:
    """One tuned config option: a float or int range, or a list of choices.

    Args:
        path: Dotted config key, e.g. ``regularizer.mixup.mixup_alpha``.
        low: Lower bound of a range.
        high: Upper bound of a range.
        log: Sample the range on a log scale.
        step: Grid step of a range (``None``: continuous floats, or 1 for ints).
        choices: Values of a categorical parameter (instead of a range).
        type: ``float``, ``int`` or ``categorical``; inferred from the other fields when ``None``.

    Example:
        >>> Param("optimizer.lr", low=0.01, high=0.3, log=True).type
        'float'
    """

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    type: str | None = None

    def __post_init__(self) -> None:
        if self.type is None:
            if self.choices is not None:
                self.type = "categorical"
            else:
                self.type = "int" if isinstance(self.low, int) and isinstance(self.high, int) else "float"
        where = f"tune params.{self.path}"
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{where} needs a non-empty choices list")
            return
        if self.type not in ("float", "int"):
            raise ConfigError(f"{where}.type must be float, int or categorical, got {self.type!r}")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ConfigError(f"{where} needs low < high, got low={self.low!r} high={self.high!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where} has log: true, so low must be > 0, got {self.low}")

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value for an optuna ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.path, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass
class Term:
    """A report metric selected by ``suite/name`` and context, times a weight, in the objective's sum.

    Example:
        >>> Term("adversarial/robust_accuracy", {"eps": "8/255"}).context
        {'eps': 0.0313725}
    """

    metric: str
    context: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.metric.count("/") != 1:
            raise ConfigError(f"objective metric {self.metric!r} must be suite/name, e.g. clean/accuracy")
        self.context = {key: _number(value) for key, value in self.context.items()}


@dataclass
class Constraint:
    """A report metric that must stay within ``[min, max]`` for a trial to count as feasible.

    Example:
        >>> Constraint("clean/accuracy", min=0.8).violation(0.75)
        0.05
    """

    metric: str
    context: dict[str, Any] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ConfigError(f"constraint on {self.metric} needs min, max or both")
        self.context = {key: _number(value) for key, value in self.context.items()}

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the bounds (0 when feasible): optuna's ``c <= 0`` convention."""
        below = 0.0 if self.min is None else self.min - value
        above = 0.0 if self.max is None else value - self.max
        return round(max(below, above, 0.0), 12)


@dataclass
class TuneSpec:
    """A tuning run: search space, objective, sampler, pruner and budget (one ``conf/tune/*.yaml``).

    Args:
        study: Study name in the storage (trials accumulate across invocations).
        params: The search space, by dotted config key.
        terms: Weighted report metrics whose sum is the objective.
        constraints: Bounds on report metrics; trials outside them are infeasible.
        direction: ``maximize`` or ``minimize`` the objective.
        recipe: Base recipe of every trial (it fixes the regularizer list).
        overrides: Train overrides applied to every trial and to the baseline.
        baseline: Overrides of the reference run the best trial is compared with.
        sampler: ``tpe``, ``gp`` (Gaussian-process Bayesian optimization) or ``random``.
        pruner: ``hyperband``, ``sha`` (successive halving), ``median`` or ``none``.
        prune_on: Validation metric reported each epoch to the pruner.
        prune_mode: ``max`` if a higher ``prune_on`` is better, else ``min``.
        n_trials: Trials per invocation.
        timeout_s: Stop starting trials after this many seconds.
        seed: Seed of the sampler.

    Example:
        >>> spec = TuneSpec.from_dict({"study": "s", "recipe": "mixup",
        ...     "objective": {"terms": [{"metric": "clean/accuracy"}]},
        ...     "params": {"optimizer.lr": {"low": 0.01, "high": 0.3, "log": True}}})
        >>> spec.sampler, spec.params[0].path
        ('tpe', 'optimizer.lr')
    """

    study: str
    params: list[Param]
    terms: list[Term]
    constraints: list[Constraint] = field(default_factory=list)
    direction: str = "maximize"
    recipe: str = "baseline"
    overrides: list[str] = field(default_factory=list)
    baseline: list[str] = field(default_factory=lambda: ["recipe=baseline"])
    sampler: str = "tpe"
    pruner: str = "hyperband"
    prune_on: str = "val/acc"
    prune_mode: str = "max"
    n_trials: int = 20
    timeout_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for option, value, allowed in (("sampler", self.sampler, SAMPLERS), ("pruner", self.pruner, PRUNERS),
                                       ("objective.direction", self.direction, DIRECTIONS),
                                       ("prune_mode", self.prune_mode, ("max", "min"))):
            if value not in allowed:
                raise ConfigError(f"tune {option}={value!r} is not one of: {', '.join(allowed)}")
        if not self.params:
            raise ConfigError("tune params is empty; give at least one option to search over")
        if not self.terms:
            raise ConfigError("tune objective.terms is empty; name at least one report metric")
        if self.n_trials < 1:
            raise ConfigError(f"tune n_trials must be >= 1, got {self.n_trials}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneSpec:
        """Build a spec from the YAML layout (``objective: {direction, terms, constraints}``, ``params: {key: …}``)."""
        data = dict(data)
        objective = dict(data.pop("objective", None) or {})
        unknown = set(objective) - {"direction", "terms", "constraints"}
        if unknown:
            raise ConfigError(f"unknown tune objective option(s): {', '.join(sorted(unknown))}")
        try:
            params = [Param(path, **dict(spec)) for path, spec in dict(data.pop("params", None) or {}).items()]
            terms = [Term(**dict(term)) for term in objective.get("terms", [])]
            constraints = [Constraint(**dict(item)) for item in objective.get("constraints", [])]
            return cls(params=params, terms=terms, constraints=constraints,
                       direction=objective.get("direction", "maximize"), **data)
        except TypeError as error:
            raise ConfigError(f"invalid tune spec: {error}") from None


def load_spec(name_or_path: str, config_root: Path) -> TuneSpec:
    """Load ``conf/tune/<name>.yaml`` (or a YAML file by path) as a :class:`TuneSpec`.

    Example:
        >>> load_spec("mixup", Path("conf")).study  # doctest: +SKIP
        'mixup'
    """
    from omegaconf import OmegaConf

    path = Path(name_or_path)
    if not path.suffix:
        path = config_root / "tune" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_root / "tune").glob("*.yaml"))
        raise ConfigError(f"no tune spec {name_or_path!r}; choose one of: {', '.join(known)}, or pass a YAML path")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    return TuneSpec.from_dict(data)


def _number(value: Any) -> Any:
    """Context values as the report stores them: ``"8/255"`` becomes ``round(8/255, 7)``."""
    if isinstance(value, str) and value.count("/") == 1:
        numerator, denominator = value.split("/")
        try:
            return round(float(numerator) / float(denominator), 7)
        except (ValueError, ZeroDivisionError):
            return value
    return value
