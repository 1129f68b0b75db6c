"""Exception types whose messages are shown to users as one actionable line.

The command-line apps catch :class:`RobustlitError` and print its message without a
traceback, so every message must name the option at fault and say how to fix it.
"""


class RobustlitError(Exception):
    """Base class for errors caused by user input (configs, data, checkpoints).

    Example:
        >>> raise RobustlitError("data.root=/nope does not exist; pass data.root=PATH")
        Traceback (most recent call last):
        ...
        robustlit.errors.RobustlitError: data.root=/nope does not exist; pass data.root=PATH
    """


class ConfigError(RobustlitError, ValueError):
    """An option is missing, unknown or out of range."""


class DataError(RobustlitError):
    """A dataset is missing, unreadable or has the wrong layout."""


class CheckpointError(RobustlitError):
    """A checkpoint is missing, unreadable or does not fit the architecture."""


class InputShapeError(RobustlitError, ValueError):
    """The data's input shape does not fit the model."""
