"""What a data module takes from the Lightning trainer it is attached to: the training device, this process's rank
among how many, and the epoch the fit loop is at. Without a trainer (a data module used on its own, as scripts and
tests do) it is one process on the CPU."""

from __future__ import annotations

import torch

from gan.data.loader import check_a_batch_per_process
from gan.data.workers import epoch_to_run, worker_loader


class TrainerContext:
    """Mixed into a LightningDataModule (whose `trainer` is None until Lightning attaches one) that has
    `batch_size`, `seed`, `shuffle` and `num_workers`."""

    pin_memory = True  # worker batches bound for a GPU go through pinned memory; a data module may turn it off

    def _data_device(self, resident: bool) -> torch.device:
        """Where in-memory images live: on the training device if `resident` and a trainer is attached, else the CPU."""
        if resident and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _rank_world(self) -> tuple[int, int]:
        return (0, 1) if self.trainer is None else (self.trainer.global_rank, self.trainer.world_size)

    def _check_a_batch_per_process(self, where, images: int) -> None:
        check_a_batch_per_process(where, images, self._rank_world()[1], self.batch_size)

    def _worker_loader(self, dataset, batch_size: int, train: bool, with_epoch: bool = False):
        """gan.data.workers' loader of this process's share, starting at the epoch the fit loop is at."""
        rank, world = self._rank_world()
        pin = self.pin_memory and self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return worker_loader(dataset, batch_size, train, self.seed, self.num_workers, rank, world, self.shuffle,
                             pin_memory=pin, with_epoch=with_epoch, epoch=epoch_to_run(self.trainer))  # fmt: skip
