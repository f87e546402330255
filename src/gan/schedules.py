"""The paper's optimiser schedule as a PyTorch LR scheduler (so Lightning checkpoints and restores it)."""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

# What a checkpoint restores: where the schedule is. Its shape (the constructor's arguments) comes from the
# config, so a resumed run follows the schedule its command line asks for.
_POSITION = ("last_epoch", "_step_count", "_last_lr", "base_lrs", "epoch")


class PaperSchedule(LRScheduler):
    """pylearn2's ExponentialDecay + MomentumAdjustor, as used by every experiment of the 2014 code.

    - learning rate: divided by `decay_factor` after every step, never below `min_lr`
      (closed form base_lr / decay_factor**step, so a resumed run gets exactly the same value);
    - momentum: `momentum_start` in the first epoch, rising linearly to `momentum_end` at epoch
      `saturate_epoch` (1-based, as pylearn2 counts), constant after;
    - optional, not in the paper: from 0-based epoch `anneal_start_epoch` on, the learning rate is also
      multiplied by a factor falling linearly over `anneal_epochs` epochs (pix2pix's `n_epochs_decay`:
      1 - (e - start + 1) / (anneal_epochs + 1), so no epoch trains at zero), to settle the oscillating
      G/D pair at the end of a run.

    Call `step()` after each optimizer step and `set_epoch(epoch)` at the start of each epoch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        decay_factor: float = 1.000004,
        min_lr: float = 1e-6,
        momentum_start: float = 0.5,
        momentum_end: float = 0.7,
        saturate_epoch: int = 250,
        anneal_start_epoch: int | None = None,
        anneal_epochs: int = 100,
        last_epoch: int = -1,
    ) -> None:
        if anneal_start_epoch is not None and (anneal_start_epoch < 0 or anneal_epochs < 1):
            raise ValueError(f"anneal_start_epoch={anneal_start_epoch}, anneal_epochs={anneal_epochs}: the anneal "
                             "needs a start epoch >= 0 and at least 1 epoch. Fix: set both, or anneal_start_epoch=null")
        self.decay_factor, self.min_lr = decay_factor, min_lr
        self.momentum_start, self.momentum_end, self.saturate_epoch = momentum_start, momentum_end, saturate_epoch
        self.anneal_start_epoch, self.anneal_epochs = anneal_start_epoch, anneal_epochs
        self.epoch = 0
        super().__init__(optimizer, last_epoch)

    def anneal_factor(self, epoch: int) -> float:
        if self.anneal_start_epoch is None or epoch < self.anneal_start_epoch:
            return 1.0
        return max(1.0 - (epoch - self.anneal_start_epoch + 1) / (self.anneal_epochs + 1), 0.0)

    def get_lr(self) -> list[float]:
        # `last_epoch` counts step() calls here: LRScheduler's name for its step counter.
        factor = self.anneal_factor(self.epoch)
        return [max(base / self.decay_factor**self.last_epoch * factor, self.min_lr) for base in self.base_lrs]

    def momentum_at(self, epoch: int) -> float:
        progress = min(max(epoch, 0) / max(self.saturate_epoch - 1, 1), 1.0)
        return self.momentum_start + (self.momentum_end - self.momentum_start) * progress

    def set_epoch(self, epoch: int) -> None:
        """`epoch` is 0-based (Lightning's current_epoch)."""
        self.epoch = epoch
        momentum = self.momentum_at(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr  # the epoch's anneal applies from its first step
            if "momentum" in group:
                group["momentum"] = momentum
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({key: value for key, value in state_dict.items() if key in _POSITION})
        # A mid-epoch resume gets no epoch start (Lightning skips on_train_epoch_start then), so the config's
        # schedule must reach the restored optimizer here, before the next step.
        self.set_epoch(self.epoch)
