"""Errors caused by what the user asked for.

The entry points print these as one line (no traceback unless HYDRA_FULL_ERROR=1) and exit non-zero,
so every message must say what was wrong and how to fix it.
"""


class GANError(Exception):
    """Base class: a problem with the user's input, not a bug in the framework."""


class ConfigError(GANError):
    """A config value is out of range, inconsistent, or unknown."""


class DataError(GANError):
    """A dataset is missing, corrupt, or has the wrong layout."""


class CheckpointError(GANError):
    """A checkpoint is missing, unreadable, or does not match the model."""


class DivergenceError(GANError):
    """Training produced a non-finite loss or weights."""
