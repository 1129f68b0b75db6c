"""Checks and request bodies behind the Recipe builder and Launcher forms (plain functions, no Streamlit)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from robustlit.errors import ConfigError

RECIPE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
OVERRIDE = re.compile(r"^[~+]{0,2}[A-Za-z_][\w./@\-]*(=.*)?$")
RECIPE_KEYS = ("name", "base", "description", "overrides")


def check_overrides(overrides: Sequence[str], where: str) -> list[str]:
    """Hydra overrides checked for syntax and for config-group options that exist in ``conf/``.

    Raises:
        ConfigError: Naming ``where`` and the bad override.

    Example:
        >>> check_overrides(["data=digits", "trainer.max_epochs=2"], "overrides")
        ['data=digits', 'trainer.max_epochs=2']
    """
    from robustlit.cli.app import config_dir
    from robustlit.cli.overrides import check_group_overrides

    cleaned = [item.strip() for item in overrides if item.strip()]
    for item in cleaned:
        if not OVERRIDE.match(item):
            raise ConfigError(f"{where}: {item!r} is not a Hydra override like key=value, +key=value or ~key")
    try:
        check_group_overrides(cleaned, config_dir())
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return cleaned


def recipe_yaml(name: str, base: str | None, description: str, overrides: Sequence[str]) -> str:
    """The YAML document the recipe editor holds.

    Example:
        >>> print(recipe_yaml("at_fast", "pgd_at", "", ["trainer.max_epochs=5"]), end="")
        name: at_fast
        base: pgd_at
        description: ''
        overrides:
        - trainer.max_epochs=5
    """
    import yaml

    data = {"name": name, "base": base, "description": description, "overrides": list(overrides)}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def validate_recipe(text: str, templates: Sequence[str]) -> dict[str, Any]:
    r"""Parse and check the editor's YAML; returns the body for ``POST /projects/{id}/recipes``.

    Raises:
        ConfigError: On YAML errors, unknown keys, a bad name, an unknown base template or a bad override.

    Example:
        >>> validate_recipe("name: fast\nbase: baseline\noverrides: [trainer.max_epochs=1]", ["baseline"])
        {'name': 'fast', 'base': 'baseline', 'description': '', 'overrides': ['trainer.max_epochs=1']}
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"recipe YAML does not parse{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise ConfigError("recipe YAML must be a mapping with name, base, description and overrides")
    unknown = sorted(set(map(str, data)) - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(f"recipe YAML has unknown key(s) {', '.join(unknown)}; use {', '.join(RECIPE_KEYS)}")
    name = str(data.get("name") or "")
    if not RECIPE_NAME.match(name):
        raise ConfigError(f"name {name!r} must be 1-100 letters, digits, '_', '.' or '-'")
    base = data.get("base")
    if base is not None and base not in templates:
        raise ConfigError(f"base {base!r} is not a recipe template; choose one of {', '.join(templates)}")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError("overrides must be a list of strings such as trainer.max_epochs=5")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError("description must be text")
    return {"name": name, "base": base, "description": description,
            "overrides": check_overrides(overrides, "overrides")}


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0, 1, 2"`` or a range ``"0-4"``.

    Raises:
        ConfigError: On anything that is not a non-negative integer, or more than 20 seeds.

    Example:
        >>> parse_seeds("0, 2-4")
        [0, 2, 3, 4]
    """
    seeds: list[int] = []
    for part in (item.strip() for item in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            raise ConfigError(f"seeds: {part!r} is not a non-negative integer or a range like 0-4")
        low, high = int(match[1]), int(match[2] or match[1])
        seeds += range(low, high + 1)
    if not seeds or len(seeds) > 20:
        raise ConfigError(f"seeds: give between 1 and 20 seeds, got {len(seeds)}")
    return list(dict.fromkeys(seeds))


def launch_body(recipe: str | None, dataset: dict[str, Any], model: dict[str, Any], seeds: str,
                extra: Sequence[str], name: str | None) -> dict[str, Any]:
    """The body of ``POST /projects/{id}/runs``.

    ``dataset`` and ``model`` are choices from :func:`dataset_choices` / :func:`model_choices`; their overrides
    come first so the user's extra overrides win.

    Example:
        >>> launch_body("baseline", {"overrides": ["data=digits"]}, {"overrides": ["model=smallcnn"]}, "0,1",
        ...             ["trainer=debug"], "try")
        {'recipe': 'baseline', 'overrides': ['data=digits', 'model=smallcnn', 'trainer=debug'], 'seeds': [0, 1], \
'name': 'try'}
    """
    overrides = check_overrides([*dataset["overrides"], *model["overrides"], *extra], "overrides")
    body: dict[str, Any] = {"recipe": recipe, "overrides": overrides, "seeds": parse_seeds(seeds)}
    if name and name.strip():
        body["name"] = name.strip()
    return body


def dataset_choices(registered: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Built-in data configs, then registered datasets (an ImageFolder at their URI).

    Example:
        >>> [c["label"] for c in dataset_choices([])][:2]  # doctest: +SKIP
        ['built-in: cifar10', 'built-in: cifar100']
    """
    from robustlit.cli.app import config_dir
    from robustlit.cli.overrides import group_options

    choices = [{"label": f"built-in: {option}", "overrides": [f"data={option}"]}
               for option in group_options(config_dir(), "data") or [] if option != "imagefolder"]
    choices += [{"label": f"registered: {item['name']} ({item.get('uri', '')})",
                 "overrides": ["data=imagefolder", f"data.root={item['uri']}"]}
                for item in registered if item.get("uri")]
    return choices


def model_choices(registered: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Built-in architectures, then registered model versions (loaded from their checkpoint URI).

    Example:
        >>> [c["label"] for c in model_choices([])][-1]  # doctest: +SKIP
        'built-in: wrn28_10'
    """
    from robustlit.cli.app import config_dir
    from robustlit.cli.overrides import group_options

    choices = [{"label": f"built-in: {option}", "overrides": [f"model={option}"]}
               for option in group_options(config_dir(), "model") or [] if option != "checkpoint"]
    choices += [{"label": f"registered: {item['name']} v{item.get('version', '?')}",
                 "overrides": ["model=checkpoint", f"model.checkpoint={item['uri']}"]}
                for item in registered if item.get("uri")]
    return choices
