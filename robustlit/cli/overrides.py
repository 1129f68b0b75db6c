"""Check command-line overrides of config groups before Hydra composes the config.

Hydra reports an unknown group option with a multi-line search-path dump; this check turns it
into one actionable line that lists the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from robustlit.errors import ConfigError


def group_options(config_dir: Path, group: str) -> list[str] | None:
    """Options of config group ``group`` (``None`` if it is not one of ours).

    Example:
        >>> group_options(Path("conf"), "data")  # doctest: +SKIP
        ['cifar10', 'cifar100', 'digits', 'imagefolder']
    """
    directory = config_dir / group
    if not directory.is_dir():
        return None
    return sorted(path.stem for path in directory.glob("*.yaml"))


def _values(raw: str) -> list[str] | None:
    """Option names in an override value: ``a``, ``a,b`` (sweep) or ``[a,b]`` (list); ``None`` if unparsed."""
    value = raw.strip()
    if "(" in value or "$" in value:  # sweep functions and interpolations: leave them to Hydra
        return None
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return [item.strip().strip("'\"") for item in value.split(",") if item.strip()]


def check_group_overrides(overrides: Iterable[str], config_dir: Path) -> None:
    """Raise :class:`ConfigError` if an override picks an option its config group does not have.

    Args:
        overrides: Command-line arguments such as ``data=digits`` or ``evaluation=[adversarial]``.
        config_dir: Root of the config groups.

    Example:
        >>> check_group_overrides(["data=nope"], Path("conf"))  # doctest: +SKIP
        Traceback (most recent call last):
        robustlit.errors.ConfigError: unknown data option 'nope'; choose one of: cifar10, cifar100, digits, imagefolder
    """
    for override in overrides:
        if "=" not in override or override.startswith("-"):
            continue
        key, raw = override.split("=", 1)
        group = key.lstrip("+~").split("@", 1)[0]
        if group.startswith("hydra") or key.startswith("~"):
            continue
        options = group_options(config_dir, group)
        values = _values(raw)
        if options is None or values is None:
            continue
        for value in values:
            if value == "null":
                raise ConfigError(f"{group}=null does not remove a config group; write ~{group} instead")
            if value not in options:
                raise ConfigError(f"unknown {group} option {value!r}; choose one of: {', '.join(options)}")
