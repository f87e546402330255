"""Checkpoints: the best by a metric, and `last.ckpt` at every save point, named by the project's epoch count."""

from __future__ import annotations

from functools import cached_property

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose `{epoch}` in file names counts epochs from 1, as the progress bar,
    samples and figures do: epoch_0001.ckpt holds the first epoch's training (Lightning's own 0-based index
    stays in the checkpoint's "epoch" field)."""

    def format_checkpoint_name(self, metrics: dict, filename: str | None = None, ver: int | None = None,
                               prefix: str | None = None) -> str:  # fmt: skip
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename=filename, ver=ver, prefix=prefix)


class LastAndBestCheckpoint(EpochCheckpoint):
    """EpochCheckpoint, with `last.ckpt` refreshed at every epoch-end save point.

    Lightning 2.6 rewrites last.ckpt at an epoch end only when a top-k checkpoint is written there too: once
    the monitored metric stops improving, last.ckpt stays at the best epoch, and a resumed or requeued job
    would silently lose every epoch since. Step-triggered saves (every_n_train_steps) already write it.
    """

    @cached_property
    def state_key(self) -> str:
        # Lightning formats every callback's key on every hook call (several a batch); the parent rebuilds this
        # one from its constructor arguments each time, which never change.
        return super().state_key

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: Trainer) -> None:
        epoch_due = self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0
        # Skipped when the parent saved at this step already (its top-k save writes last.ckpt too).
        if self.save_last and epoch_due and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
