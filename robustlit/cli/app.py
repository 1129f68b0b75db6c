"""Shared plumbing of the Hydra apps: where configs live, and one-line errors instead of tracebacks."""

from __future__ import annotations

import functools
import importlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

import robustlit
from robustlit.cli.overrides import check_group_overrides
from robustlit.errors import ConfigError, RobustlitError

T = TypeVar("T")


def config_dir() -> Path:
    """The config root: ``robustlit/conf`` in an installed wheel, ``conf/`` in a source checkout.

    Example:
        >>> (config_dir() / "train.yaml").is_file()
        True
    """
    package_dir = Path(robustlit.__file__).resolve().parent
    for candidate in (package_dir / "conf", package_dir.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise RuntimeError(
        f"robustlit's configs are missing: neither {package_dir / 'conf'} nor "
        f"{package_dir.parent / 'conf'} holds train.yaml; reinstall robustlit"
    )


def user_message(error: BaseException) -> str | None:
    """One-line message for errors caused by user input, ``None`` for genuine bugs.

    Example:
        >>> user_message(ConfigError("data.root is missing; pass data.root=PATH"))
        'data.root is missing; pass data.root=PATH'
    """
    if isinstance(error, MissingMandatoryValue):
        key = getattr(error, "full_key", None) or "a required option"
        return f"missing value for {key}; pass {key}=VALUE on the command line"
    if isinstance(error, InstantiationException):
        cause = error.__cause__
        if cause is not None:
            message = user_message(cause) or f"{type(cause).__name__}: {cause}"
        else:
            message = str(error).strip().splitlines()[-1]
        return message.splitlines()[0]
    if isinstance(error, RobustlitError | OmegaConfBaseException) or _is_misconfiguration(error):
        lines = str(error).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith("Caught "):
            # re-raised from a DataLoader worker: the original message ends the embedded traceback
            return lines[-1].split(": ", 1)[-1]
        return lines[0]
    return None


def _is_misconfiguration(error: BaseException) -> bool:
    """Whether ``error`` is Lightning's MisconfigurationException, without importing Lightning (slow) otherwise."""
    if "lightning" not in sys.modules:
        return False
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    return isinstance(error, MisconfigurationException)


def exit_on_user_error(program: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate an app's task so input errors print ``program: error: …`` and exit with status 2.

    Example:
        >>> @exit_on_user_error("robustlit-train")
        ... def task(cfg):
        ...     raise ConfigError("model.width must be positive")
    """

    def decorate(task: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(task)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return task(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - we re-raise everything that is not a user error
                message = user_message(error)
                if message is None:
                    raise
                print(f"{program}: error: {message}", file=sys.stderr)
                raise SystemExit(2) from None

        return wrapper

    return decorate


def silence_known_warnings() -> None:
    """Hide third-party warnings that users cannot act on (Lightning's use of a deprecated torch API)."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.load` is deprecated")


def run_hydra_app(program: str, config_name: str, task: str) -> None:
    """Check group overrides, then run ``task`` as a Hydra app over ``config_name``.

    Args:
        program: Name shown in error messages.
        config_name: Primary config file (without ``.yaml``) under :func:`config_dir`.
        task: ``"module:function"`` of the function of the composed config; imported only after the
            overrides passed the check, so typos are reported without waiting for torch to import.
    """
    import hydra

    root = config_dir()
    try:
        check_group_overrides(sys.argv[1:], root)
    except ConfigError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    silence_known_warnings()
    module_name, function_name = task.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    hydra.main(version_base=None, config_path=str(root), config_name=config_name)(
        exit_on_user_error(program)(function)
    )()


def train_main() -> None:
    """Console entry point of ``robustlit-train``."""
    run_hydra_app("robustlit-train", "train", "robustlit.cli.train:train")


def eval_main() -> None:
    """Console entry point of ``robustlit-eval``."""
    run_hydra_app("robustlit-eval", "eval", "robustlit.cli.eval:evaluate")
