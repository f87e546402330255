"""Stores the run's resolved config in every checkpoint, so `gan-eval ckpt_path=...` can rebuild the model."""

from __future__ import annotations

from typing import Any

from lightning import Callback


class StoreRunConfig(Callback):
    KEY = "gan_config"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = self.config
