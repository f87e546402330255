"""Batches from a Dataset through worker processes, resumable mid-epoch: torchdata's StatefulDataLoader.

Lightning saves `loader.state_dict()` in every checkpoint and hands it back to `load_state_dict` on resume;
StatefulDataLoader's state covers its workers (how far each got) and its sampler's state, which says where in
the epoch's order training was. The sampler also keeps the epoch in its state: Lightning creates a resumed run's
iterator before it calls `set_epoch`, and the workers draw the first indices as soon as it exists.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from gan.data.loader import EpochPermutation, rank_share, share_size


class EpochShardSampler(DistributedSampler):
    """The in-memory loader's order (gan.data.loader: a permutation seeded by (seed, epoch), drawn on the CPU,
    and this rank's share of it), so workers change nothing about which images a batch holds.

    A DistributedSampler, so Lightning leaves it in place under DDP instead of substituting its own.
    `state_dict`: the epoch and how many of its indices were drawn. `with_epoch`: yield (epoch, index) pairs, so a
    dataset can seed per-item randomness from them whichever worker serves the item (see ImageFiles).
    """

    def __init__(self, data: Sized, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True, with_epoch: bool = False) -> None:  # fmt: skip
        super().__init__(data, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.num_samples = share_size(len(data), rank, world_size, drop_last)
        self.with_epoch = with_epoch
        self.yielded, self._resume_at = 0, 0

    def __iter__(self) -> Iterator:
        epoch, start = self.epoch, self._resume_at  # read once: set_epoch during this pass changes nothing
        self._resume_at = 0
        order = EpochPermutation(self.seed, self.shuffle)
        order.set_epoch(epoch)
        indices = rank_share(order.indices(len(self.dataset)), self.rank, self.num_replicas, self.drop_last).tolist()
        self.yielded = start
        for index in itertools.islice(indices, start, None):
            self.yielded += 1
            yield (epoch, index) if self.with_epoch else index

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(state["epoch"])
        self._resume_at = state["yielded"]


def epoch_to_run(trainer) -> int:
    """The epoch a training loader made now will start with: worker processes draw their first indices when
    Lightning creates the iterator, before it calls `set_epoch`, and a run resumed from an epoch-end checkpoint
    gets no saved loader state (Lightning loads it mid-epoch only), so the sampler must know the epoch already."""
    progress = getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_progress", None), "current", None)
    return int(getattr(progress, "processed", 0))


def worker_loader(dataset, batch_size: int, train: bool, seed: int, num_workers: int, rank: int = 0,
                  world_size: int = 1, shuffle: bool = True, pin_memory: bool = False,
                  with_epoch: bool = False, epoch: int = 0) -> StatefulDataLoader:  # fmt: skip
    """Training (`train`): shuffled by (seed, epoch), full batches of this rank's share only. Evaluation: in
    order, every item once, the last batch possibly short.

    Workers persist across epochs (no process start per epoch); the loader's generator, which only draws the
    workers' base seed, is seeded so that not even that depends on the global RNG.
    """
    sampler = EpochShardSampler(dataset, seed, shuffle and train, rank, world_size, drop_last=train,
                                with_epoch=with_epoch)  # fmt: skip
    sampler.set_epoch(epoch)
    with warnings.catch_warnings():  # torchdata 0.11 calls torch.set_vital, deprecated in torch 2.9: not our concern
        warnings.filterwarnings("ignore", message=".*set_vital.*")
        return StatefulDataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=train, num_workers=num_workers,
            persistent_workers=num_workers > 0, pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
