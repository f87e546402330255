"""Batches straight from an in-memory tensor: no Dataset, no per-item indexing, no collate, no workers.

For datasets that fit in (GPU) memory this is what makes the framework as fast as a bare loop: one
`index_select` per batch, on whatever device the tensor lives on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


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
        """Made on `device` (on a GPU: no host-to-device copy, ever)."""
        if not self.shuffle:
            return torch.arange(n, device=device)
        generator = torch.Generator(device).manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=generator, device=device)


class TensorBatchLoader:
    """Iterates over batches of `data` (N, ...) for one rank of `world_size`.

    Each rank gets a disjoint, equally long share of every epoch's permutation (the tail that does not
    divide evenly is dropped when training (drop_last), so all ranks run the same number of steps; evaluation
    keeps every item exactly once by giving the first ranks one item more).
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
        order = self.sampler.indices(len(self.data), self.data.device)
        if self.drop_last:  # training: equal shares, or a rank with one batch less leaves the others waiting in DDP
            per_rank = len(order) // self.world_size
            return order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order[self.rank :: self.world_size]

    def _num_items(self) -> int:
        n = len(self.data)
        if self.drop_last:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

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
