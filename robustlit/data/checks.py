"""Eager checks of datamodule options that raise one-line :class:`~robustlit.errors.ConfigError` messages."""

from __future__ import annotations

from collections.abc import Sequence

from robustlit.errors import ConfigError


def check_int(option: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an integer of at least ``minimum``, else raise ConfigError.

    Args:
        option: option name without the ``data.`` prefix, used in the message.
        value: the value to check.
        minimum: smallest allowed value.

    Returns:
        The value, unchanged.

    Raises:
        ConfigError: if ``value`` is not an integer (bools are refused) or is below ``minimum``.

    Example:
        >>> check_int("batch_size", 64, 1)
        64
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"data.{option}={value!r} must be an integer >= {minimum}")
    return value


def check_fraction(option: str, value: object, allow_zero: bool) -> float:
    """Return ``value`` as a float if it lies in (0, 1), or [0, 1) with ``allow_zero``, else raise.

    Args:
        option: option name without the ``data.`` prefix, used in the message.
        value: the value to check.
        allow_zero: whether 0 is allowed (for an optional split such as validation).

    Returns:
        The value as a float.

    Raises:
        ConfigError: if ``value`` is not a number in the allowed range.

    Example:
        >>> check_fraction("val_fraction", 0.1, allow_zero=True)
        0.1
    """
    in_range = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value >= 0 if allow_zero else value > 0)
        and value < 1
    )
    if not in_range:
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"data.{option}={value!r} must be a fraction in {interval}")
    return float(value)


def check_stats(option: str, values: Sequence[float], channels: int, positive: bool) -> tuple[float, ...]:
    """Return per-channel statistics as a tuple of ``channels`` floats, else raise ConfigError.

    Args:
        option: ``"mean"`` or ``"std"``, used in the message.
        values: one value per channel.
        channels: the number of image channels.
        positive: whether every value must be > 0 (true for a standard deviation).

    Returns:
        The values as a tuple of floats.

    Raises:
        ConfigError: if the length differs from ``channels`` or a value is out of range.

    Example:
        >>> check_stats("std", [0.25, 0.25, 0.25], 3, positive=True)
        (0.25, 0.25, 0.25)
    """
    try:
        stats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"data.{option}={values!r} must be a list of {channels} numbers") from None
    if len(stats) != channels:
        raise ConfigError(
            f"data.{option} has {len(stats)} values but data.channels={channels}; give one value per channel"
        )
    if positive and min(stats) <= 0:
        raise ConfigError(f"data.{option}={list(stats)} must be > 0 in every channel")
    return stats
