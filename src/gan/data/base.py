"""The shared shape of every dataset: three in-memory splits of images, served by TensorBatchLoader."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning import LightningDataModule
from torch.utils.data import TensorDataset

from gan.data.loader import TensorBatchLoader
from gan.data.scaling import SCALINGS, scale, to_unit_range
from gan.data.trainer_context import TrainerContext
from gan.errors import ConfigError, DataError


class InMemoryImageDataModule(TrainerContext, LightningDataModule):
    """Subclasses implement `load_splits()`, returning float tensors in [0, 1] of shape (N, *shape).

    `scaling` maps them to what the networks see (`gcn_scale`: each image's norm under gcn, 55 in the paper's
    CIFAR-10 code). With `device_resident` (default) the splits move to the training device once, so no
    batch is copied host-to-device during training. `num_workers > 0` switches
    to a DataLoader with worker processes (only useful if a subclass adds per-item work), resumable mid-epoch
    like the in-memory loader (see gan.data.workers).
    """

    name = "dataset"

    def __init__(
        self,
        root: str = "data",
        shape: Sequence[int] = (1, 28, 28),
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        scaling: str = "unit",
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        device_resident: bool = True,
        gcn_scale: float = 55.0,
    ) -> None:
        super().__init__()
        if scaling not in SCALINGS:
            raise ConfigError(f"data.scaling={scaling!r} is not one of {list(SCALINGS)}")
        if not gcn_scale > 0:
            raise ConfigError(f"data.gcn_scale={gcn_scale!r} is invalid: must be a number > 0 (e.g. data.gcn_scale=55)")
        self.gcn_scale = float(gcn_scale)
        self.root, self.shape = root, tuple(shape)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.scaling, self.shuffle, self.seed = scaling, shuffle, seed
        self.num_workers, self.device_resident = num_workers, device_resident
        self.splits: dict[str, torch.Tensor] = {}

    # --- what subclasses provide -------------------------------------------------------------------------
    def load_splits(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def hold_out_validation(self, train: torch.Tensor, test: torch.Tensor, val_size: int, where) -> dict[str, torch.Tensor]:
        """The paper's split: the last `val_size` training images are the validation set."""
        if not 0 < val_size < len(train):
            raise DataError(
                f"data.val_size={val_size} must be between 1 and {len(train) - 1} for {len(train)} training images in {where}"
            )
        cut = len(train) - val_size
        return {"train": train[:cut], "val": train[cut:], "test": test}

    # --- Lightning hooks -----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        for split, images in splits.items():
            if tuple(images.shape[1:]) != self.shape:
                raise DataError(
                    f"{self.name} {split} images have shape {tuple(images.shape[1:])} but data.shape is "
                    f"{list(self.shape)}; fix data.shape or the files under {self.root}"
                )
            if len(images) == 0:
                raise DataError(f"{self.name} {split} split is empty; check the files under {self.root}")
        device = self._data_device(self.device_resident and self.num_workers == 0)  # workers read host memory
        self.splits = {
            name: scale(images, self.scaling, self.gcn_scale).contiguous().to(device) for name, images in splits.items()
        }

    def _training_progress(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def _loader(self, split: str, train: bool):
        data = self.splits[split]
        batch_size = self.batch_size if train else self.eval_batch_size
        shuffle = self.shuffle and train
        if self.num_workers > 0:  # the same batches as without workers, and resumable mid-epoch
            return self._worker_loader(TensorDataset(data), batch_size, train)
        rank, world = self._rank_world()
        progress = self._training_progress if train and self.trainer is not None else None
        return TensorBatchLoader(data, batch_size, shuffle, drop_last=train, seed=self.seed, rank=rank,
                                 world_size=world, progress=progress)  # fmt: skip

    def train_dataloader(self):
        self._check_a_batch_per_process(self.name, len(self.splits["train"]))
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    # --- what models and callbacks ask for ------------------------------------------------------------------
    def images(self, split: str) -> torch.Tensor:
        """A whole split as the networks see it, (N, *shape), on the data device."""
        if not self.splits:
            self.setup()
        return self.splits[split]

    def pixel_mean(self) -> torch.Tensor:
        """Mean training image in the networks' space (for the generator's output bias)."""
        return self.images("train").mean(dim=0)

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        return to_unit_range(images, self.scaling)
