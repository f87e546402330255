"""Stops training at the first non-finite loss and never lets non-finite weights into a checkpoint."""

from __future__ import annotations

import torch
from lightning import Callback, LightningModule, Trainer

from gan.errors import DivergenceError


class DivergenceGuard(Callback):
    """Watches the losses each step without a host sync: a device flag remembers the first bad batch.

    The flag is read every `check_every_n_steps` batches and before every checkpoint is written; a
    non-finite loss or weight raises DivergenceError naming the batch, so the last checkpoint on disk
    stays the last good one.
    """

    def __init__(self, check_every_n_steps: int = 50) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None
        self._bad_loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        losses = [v for k, v in (outputs or {}).items() if k.endswith("loss")]
        if not losses:
            return
        step = pl_module.batches_seen - 1
        finite = torch.isfinite(sum(losses))  # one op: a sum is finite iff every term is
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=finite.device)
        newly_bad = (~finite) & (self._first_bad < 0)
        self._first_bad = torch.where(newly_bad, torch.full_like(self._first_bad, step), self._first_bad)
        if (step + 1) % self.check_every_n_steps == 0:
            self._check_losses(pl_module)

    def _check_losses(self, pl_module: LightningModule) -> None:
        if self._first_bad is not None and (first_bad := int(self._first_bad)) >= 0:
            raise DivergenceError(
                f"training diverged: a non-finite D or G loss at training batch {first_bad} (epoch "
                f"{pl_module.current_epoch}); the last checkpoint on disk is the last good one. Fix: lower the "
                "learning rates or resume from that checkpoint with another seed"
            )

    def check(self, pl_module: LightningModule) -> None:
        self._check_losses(pl_module)
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise DivergenceError(
                f"training diverged: non-finite weights in {bad[0]} (and {len(bad) - 1} more) after training batch "
                f"{pl_module.batches_seen - 1}; the last checkpoint on disk is the last good one. Fix: lower the "
                "learning rates or resume from that checkpoint"
            )

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        self.check(pl_module)
