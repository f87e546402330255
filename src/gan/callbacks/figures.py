"""Figures 2 and 3 of the paper written during training (every N epochs and at the end)."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import save_image

from gan.callbacks.samples import log_image_to_loggers
from gan.figures import interpolation_grid, nearest_neighbour_grid


def paper_figures(pl_module: LightningModule, datamodule, rows: int = 8, columns: int = 6, pairs: int = 8,
                  steps: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
    """{"figure2": grid, "figure3": grid} as (C, H, W) images in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    to_pixels = datamodule.to_unit_range
    samples = to_pixels(pl_module.sample(rows * columns, generator=generator).float())
    figure2 = nearest_neighbour_grid(samples, datamodule.images("train"), columns, to_pixels=to_pixels)
    z_start, z_end = pl_module.noise(pairs, generator=generator), pl_module.noise(pairs, generator=generator)
    figure3 = interpolation_grid(lambda z: to_pixels(pl_module.sample(len(z), noise=z).float()), z_start, z_end, steps)
    return {"figure2": figure2, "figure3": figure3}


class PaperFigures(Callback):
    """Saves `figures/figure2_epoch_XXXX.png` (samples + nearest training image) and `figure3_...`
    (interpolations) in the run folder, and sends them to image loggers."""

    def __init__(self, dirpath: str, every_n_epochs: int = 10, rows: int = 8, columns: int = 6, pairs: int = 8,
                 steps: int = 10, seed: int = 0) -> None:  # fmt: skip
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs
        self.options = {"rows": rows, "columns": columns, "pairs": pairs, "steps": steps, "seed": seed}

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        for name, grid in paper_figures(pl_module, trainer.datamodule, **self.options).items():
            save_image(grid, self.dirpath / f"{name}_epoch_{epoch:04d}.png")
            log_image_to_loggers(trainer, name, grid)


def toy_grid(datamodule, margin: float = 1.5, points: int = 400):
    """An x grid covering the 1-D data with a margin, and p_data on it."""
    import numpy as np

    train = datamodule.images("train").flatten().cpu()
    xs = np.linspace(float(train.min()) - margin, float(train.max()) + margin, points)
    return xs, datamodule.density(torch.as_tensor(xs)).numpy()


class ToyDensityPlot(Callback):
    """For the 1-D toy: `figures/toy_epoch_XXXX.png` with p_data, p_g and D(x), every N epochs (one panel of Figure 1)."""

    def __init__(self, dirpath: str, every_n_epochs: int = 5) -> None:
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from gan.figures.toy import figure1, toy_stage

        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        xs, p_data = toy_grid(trainer.datamodule)
        figure1([toy_stage(pl_module, xs, f"epoch {epoch}")], xs, p_data, self.dirpath / f"toy_epoch_{epoch:04d}.png")
