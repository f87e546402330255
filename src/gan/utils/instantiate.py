"""Build objects from config nodes (each a dict with a _target_), with failures explained in one line.

Hydra reports a constructor that fails as a multi-line InstantiationException. A project or user class that
rejects its arguments is a config problem, so it becomes a ConfigError naming the config key to fix.
"""

from __future__ import annotations

import re

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from gan.config import RENAMED_KEYS
from gan.errors import ConfigError, GANError


def build(node: DictConfig, key: str, **kwargs):
    """instantiate(node, **kwargs); a bad `_target_` or argument under config key `key` fails in one line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        raise _explained(error, key) from None


def _explained(error: InstantiationException, key: str) -> Exception:
    cause, text = error.__cause__, str(error)
    if isinstance(cause, GANError):  # the class's own one-line message
        return cause
    nested = re.search(r"full_key: (\S+)", text)
    where = nested.group(1) if nested else key
    if not (where == key or where.startswith(key + ".")):  # a node built on its own reports keys relative to it
        where = f"{key}.{where}"
    target = re.search(r"target '([^']+)'", text)
    target = target.group(1) if target else "its _target_"
    if text.startswith("Error locating target"):
        return ConfigError(f"{where}._target_={target} cannot be imported. Fix: check the spelling, and put the folder "
                           "holding its module on PYTHONPATH (docs/extending.md)")  # fmt: skip
    if isinstance(cause, TypeError) and "argument" in str(cause):
        unexpected = re.search(r"unexpected keyword argument '([^']+)'", str(cause))
        if unexpected and (moved := RENAMED_KEYS.get(f"{where}.{unexpected.group(1)}")):  # e.g. an older experiment file
            return ConfigError(f"{where}.{unexpected.group(1)} is now {moved}. Fix: rename it in your config")
        fix = (f"remove {where}.{unexpected.group(1)} or rename it to an argument of {target}" if unexpected
               else f"give {target} the arguments it takes under {where}")  # fmt: skip
        return ConfigError(f"{where} ({target}) cannot be built: {cause}. Fix: {fix}")
    return error  # anything else is a bug in that class, not a config problem: keep the full report


def _instantiate_group(group: DictConfig | None, key: str) -> list:
    if not group:
        return []
    return [build(entry, f"{key}.{name}") for name, entry in group.items()
            if isinstance(entry, DictConfig) and "_target_" in entry]  # fmt: skip


def instantiate_callbacks(group: DictConfig | None) -> list[Callback]:
    return _instantiate_group(group, "callbacks")


def instantiate_loggers(group: DictConfig | None) -> list[Logger]:
    return _instantiate_group(group, "logger")
