"""The paper's optimiser schedule as a PyTorch LR scheduler (so Lightning checkpoints and restores it)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class PaperSchedule(LRScheduler):
    """pylearn2's ExponentialDecay + MomentumAdjustor, as used by every experiment of the 2014 code.

    - learning rate: divided by `decay_factor` after every step, never below `min_lr`
      (closed form base_lr / decay_factor**step, so a resumed run gets exactly the same value);
    - momentum: `momentum_start` in the first epoch, rising linearly to `momentum_end` at epoch
      `saturate_epoch` (1-based, as pylearn2 counts), constant after.

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
        last_epoch: int = -1,
    ) -> None:
        self.decay_factor, self.min_lr = decay_factor, min_lr
        self.momentum_start, self.momentum_end, self.saturate_epoch = momentum_start, momentum_end, saturate_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        # `last_epoch` counts step() calls here: LRScheduler's name for its step counter.
        return [max(base / self.decay_factor**self.last_epoch, self.min_lr) for base in self.base_lrs]

    def momentum_at(self, epoch: int) -> float:
        progress = min(max(epoch, 0) / max(self.saturate_epoch - 1, 1), 1.0)
        return self.momentum_start + (self.momentum_end - self.momentum_start) * progress

    def set_epoch(self, epoch: int) -> None:
        """`epoch` is 0-based (Lightning's current_epoch)."""
        momentum = self.momentum_at(epoch)
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                group["momentum"] = momentum
