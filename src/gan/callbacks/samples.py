"""A PNG grid of generator samples from fixed noise, every N epochs, saved and sent to image loggers."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image


def log_image_to_loggers(trainer: Trainer, key: str, image: torch.Tensor) -> None:
    """Send a (C, H, W) image in [0, 1] to every logger that takes images (W&B, TensorBoard)."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # WandbLogger
            logger.log_image(key=key, images=[image], step=trainer.global_step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoardLogger
            logger.experiment.add_image(key, image, global_step=trainer.global_step)


class SampleGrid(Callback):
    """Saves `samples/epoch_XXXX.png` in the run folder: the same noise every time, so grids compare.

    `grid_size` images in rows of `nrow`; epoch_0000.png shows the untrained generator.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1, grid_size: int = 100, nrow: int = 10, seed: int = 0):
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs
        self.grid_size, self.nrow, self.seed = grid_size, nrow, seed

    def _noise(self, pl_module: LightningModule) -> torch.Tensor:
        return pl_module.noise(self.grid_size, generator=torch.Generator().manual_seed(self.seed))

    @rank_zero_only
    def save(self, trainer: Trainer, pl_module: LightningModule, name: str) -> Path:
        images = pl_module.sample(self.grid_size, noise=self._noise(pl_module))
        images = trainer.datamodule.to_unit_range(images.float()) if trainer.datamodule is not None else images
        grid = make_grid(images.cpu(), nrow=self.nrow, padding=2, pad_value=1.0)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"{name}.png"
        save_image(grid, path)
        log_image_to_loggers(trainer, "samples", grid)
        return path

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Only a run that starts from scratch shows the untrained G (a resume within epoch 0 is already trained).
        if trainer.current_epoch == 0 and pl_module.batches_seen == 0 and not trainer.sanity_checking:
            self.save(trainer, pl_module, "epoch_0000")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            self.save(trainer, pl_module, f"epoch_{epoch:04d}")
