"""Batches straight from an in-memory tensor: no Dataset, no per-item indexing, no collate, no workers.

For datasets that fit in (GPU) memory this is what makes the framework as fast as a bare loop: one
`index_select` per batch, on whatever device the tensor lives on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from gan.errors import DataError


class EpochPermutation:
    """The order of one epoch: a permutation seeded by (seed, epoch), the same on every rank.

    Lightning calls `set_epoch` at every epoch start (it looks for `loader.sampler.set_epoch`, the
    DistributedSampler convention), so the order depends on the epoch only, never on history.
    """

    def __init__(self, seed: int, shuffle: bool) -> None:
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Drawn on the CPU and moved to `device`: CUDA's randperm gives another order than the CPU's for the
        same seed, and a run's data order must not depend on where it runs (one small copy per epoch)."""
        if not self.shuffle:
            return torch.arange(n, device=device)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=generator).to(device)


def rank_share(order: torch.Tensor, rank: int, world_size: int, drop_last: bool) -> torch.Tensor:
    """This rank's part of an epoch's order. Training (`drop_last`): equal contiguous shares, or a rank with one
    batch less leaves the others waiting in DDP; evaluation: every `world_size`-th item, each item once."""
    if drop_last:
        per_rank = len(order) // world_size
        return order[rank * per_rank : (rank + 1) * per_rank]
    return order[rank::world_size]


def share_size(n: int, rank: int, world_size: int, drop_last: bool) -> int:
    return n // world_size if drop_last else len(range(rank, n, world_size))


class TensorBatchLoader:
    """Iterates over batches of `data` (N, ...) for one rank of `world_size`.

    Each rank gets a disjoint share of every epoch's permutation (`rank_share`).
    Resumable mid-epoch: `state_dict` records how many batches of the epoch training has consumed,
    read from `progress` (Lightning prefetches one batch, so the loader's own count runs ahead).
    """

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        progress: Callable[[], int] | None = None,
    ) -> None:
        self.data, self.batch_size, self.drop_last = data, batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochPermutation(seed, shuffle)
        self.batch_sampler = None  # Lightning inspects these two DataLoader attributes
        self._progress = progress
        self._yielded = 0
        self._resume_at = 0

    @property
    def dataset(self) -> torch.Tensor:
        return self.data

    def _rank_indices(self) -> torch.Tensor:
        return rank_share(self.sampler.indices(len(self.data), self.data.device), self.rank, self.world_size, self.drop_last)

    def _num_items(self) -> int:
        return share_size(len(self.data), self.rank, self.world_size, self.drop_last)

    def __len__(self) -> int:
        items = self._num_items()
        return items // self.batch_size if self.drop_last else -(-items // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        start, self._resume_at = self._resume_at, 0
        indices = self._rank_indices()
        self._yielded = start
        for b in range(start, len(self)):
            self._yielded += 1
            yield self.data.index_select(0, indices[b * self.batch_size : (b + 1) * self.batch_size])

    def state_dict(self) -> dict[str, int]:
        consumed = self._progress() if self._progress is not None else self._yielded
        return {"epoch": self.sampler.epoch, "batches_consumed": int(consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._resume_at = state["batches_consumed"]


def check_a_batch_per_process(where, images: int, world: int, batch_size: int) -> None:
    """Every training batch is full (drop_last), so a share smaller than one batch trains nothing. Every process
    computes the same share, so all of them stop here together (none is left waiting in a collective)."""
    if images // world < batch_size:
        share = f", {images // world} for each of {world} processes" if world > 1 else ""
        raise DataError(f"{where} has {images} training images{share}, fewer than one batch of "
                        f"data.batch_size={batch_size}, so nothing would train; lower data.batch_size")
