"""The members' datamodules as one: training batches stacked (members, batch, ...), each member in its own order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from lightning import LightningDataModule


def _images(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


class _EachMemberEpoch:
    """Lightning calls `loader.sampler.set_epoch(epoch)` every epoch: pass it on to each member's loader, where the
    epoch seeds that member's order (DistributedSampler's convention, which the project's loaders follow)."""

    def __init__(self, loaders: Sequence) -> None:
        self.samplers = [s for loader in loaders for s in (getattr(loader, "sampler", None),
                         getattr(getattr(loader, "batch_sampler", None), "sampler", None)) if hasattr(s, "set_epoch")]  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            sampler.set_epoch(epoch)


class FusedTrainingLoader:
    """One batch of every member's training loader per step, stacked; resumable mid-epoch through their states."""

    def __init__(self, loaders: Sequence) -> None:
        self.loaders = list(loaders)
        self.sampler, self.batch_sampler = _EachMemberEpoch(self.loaders), None
        self.dataset = self.loaders[0].dataset

    def __len__(self) -> int:
        return min(len(loader) for loader in self.loaders)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batches in zip(*self.loaders):
            yield torch.stack([_images(batch) for batch in batches])

    def state_dict(self) -> dict:
        return {"members": [loader.state_dict() if hasattr(loader, "state_dict") else {} for loader in self.loaders]}

    def load_state_dict(self, state: dict) -> None:
        for loader, member_state in zip(self.loaders, state["members"], strict=True):
            if member_state:
                loader.load_state_dict(member_state)


class _EachMemberHeldOut:
    """The members' evaluation batches, stacked (members, batch, ...): each member is scored on its own held-out
    split, as its run alone is (the same images, unless a dataset draws its splits from the seed)."""

    def __init__(self, loaders: Sequence) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return min(len(loader) for loader in self.loaders)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batches in zip(*self.loaders):
            yield torch.stack([_images(batch) for batch in batches])


class FusedDataModule(LightningDataModule):
    """The members' datamodules (one per job, built from its own config and seed) behind one."""

    def __init__(self, members: Sequence[LightningDataModule]) -> None:
        super().__init__()
        self.members = list(members)

    def setup(self, stage: str) -> None:
        for member in self.members:
            member.trainer = self.trainer  # device, rank and training progress come from the one trainer
            member.setup(stage)
            _share_equal_splits(member, self.members[0])

    def train_dataloader(self) -> FusedTrainingLoader:
        return FusedTrainingLoader([member.train_dataloader() for member in self.members])

    def val_dataloader(self) -> _EachMemberHeldOut:
        return _EachMemberHeldOut([member.val_dataloader() for member in self.members])

    def test_dataloader(self) -> _EachMemberHeldOut:
        return _EachMemberHeldOut([member.test_dataloader() for member in self.members])


def _share_equal_splits(member: LightningDataModule, first: LightningDataModule) -> None:
    """In-memory splits (`splits`: name -> tensor) equal to the first member's are that tensor: N members of a dataset
    that fits in memory hold it once, not N times (loaded one after another, so at most twice at any moment)."""
    mine, theirs = getattr(member, "splits", None), getattr(first, "splits", None)
    if member is first or not isinstance(mine, dict) or not isinstance(theirs, dict):
        return
    for name, images in mine.items():
        other = theirs.get(name)
        if torch.is_tensor(images) and torch.is_tensor(other) and images is not other and \
                images.shape == other.shape and torch.equal(images, other):  # fmt: skip
            mine[name] = other
