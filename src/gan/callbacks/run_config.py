"""Stores the run's resolved config in every checkpoint, so `gan-eval ckpt_path=...` can rebuild the model."""

from __future__ import annotations

from typing import Any

from lightning import Callback


class StoreRunConfig(Callback):
    KEY = "gan_config"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @classmethod
    def stored(cls, checkpoint: dict[str, Any]) -> dict[str, Any] | None:
        """The run config a checkpoint holds, in today's layout: checkpoints written before the objective became
        a config group name the paper's G loss as model.g_loss."""
        config = checkpoint.get(cls.KEY)
        model = (config or {}).get("model") or {}
        if "g_loss" in model and "objective" not in model:
            model = {key: value for key, value in model.items() if key != "g_loss"}
            model["objective"] = {"_target_": "gan.objectives.GAN2014", "g_loss": config["model"]["g_loss"]}
            config = {**config, "model": model}
        return config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = self.config
