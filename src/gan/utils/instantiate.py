"""Build lists of callbacks and loggers from config groups (each entry a dict with a _target_)."""

from __future__ import annotations

from hydra.utils import instantiate
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig


def _instantiate_group(group: DictConfig | None) -> list:
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def instantiate_callbacks(group: DictConfig | None) -> list[Callback]:
    return _instantiate_group(group)


def instantiate_loggers(group: DictConfig | None) -> list[Logger]:
    return _instantiate_group(group)
