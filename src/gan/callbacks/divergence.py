"""Stops training at the first non-finite loss and never lets non-finite weights into a checkpoint."""

from __future__ import annotations

import torch
from lightning import Callback, LightningModule, Trainer

from gan.errors import DivergenceError


class DivergenceGuard(Callback):
    """Keeps the last steps' loss tensors (no tensor op, no host sync per step) and checks them together.

    The check runs every `check_every_n_steps` batches and before validation, on every rank together; a
    non-finite loss or weight raises DivergenceError naming the batch. Before a checkpoint is written only the
    weights decide, with no collective (a checkpoint may be saved on one rank only, e.g. on a signal): they are
    what goes into the file, and DDP keeps them identical on every rank, so every saving rank decides alike.
    The losses since the last check wait for the next one (they only name the first bad batch here). So the
    last checkpoint on disk stays the last good one.
    """

    def __init__(self, check_every_n_steps: int = 50) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._pending: list[tuple[int, torch.Tensor]] = []  # (training batch, detached loss)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = pl_module.batches_seen - 1
        self._pending += [(step, value) for name, value in (outputs or {}).items() if name.endswith("loss")]
        if (step + 1) % self.check_every_n_steps == 0:
            self._check_losses(pl_module)

    def _first_bad_loss(self) -> int | None:
        """The first of this rank's pending training batches with a non-finite loss (one host sync)."""
        if not self._pending:
            return None
        steps, losses = zip(*self._pending)
        finite = torch.isfinite(torch.stack(losses)).cpu()
        return None if bool(finite.all()) else steps[int((~finite).nonzero()[0])]

    @staticmethod
    def _loss_diverged(pl_module: LightningModule, where: str) -> DivergenceError:
        return DivergenceError(
            f"training diverged: a non-finite D or G loss at {where} (epoch {pl_module.current_epoch + 1}); the last "
            "checkpoint on disk is the last good one. Fix: lower the learning rates or resume from that checkpoint "
            "with another seed"
        )

    def _check_losses(self, pl_module: LightningModule) -> None:
        if not self._pending:
            return
        bad_step = self._first_bad_loss()
        self._pending = []
        # Under DDP the losses differ by rank: every rank must stop together, or the others wait forever in the
        # next all-reduce for the one that stopped.
        trainer = getattr(pl_module, "_trainer", None)
        local_ok = bad_step is None
        if not (trainer.strategy.reduce_boolean_decision(local_ok, all=True) if trainer is not None else local_ok):
            raise self._loss_diverged(pl_module, "another process's batch" if local_ok else f"training batch {bad_step}")

    def _check_weights(self, pl_module: LightningModule) -> None:
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if not bad:
            return
        if (bad_step := self._first_bad_loss()) is not None:  # the cause, where this rank saw it
            raise self._loss_diverged(pl_module, f"training batch {bad_step}")
        raise DivergenceError(
            f"training diverged: non-finite weights in {bad[0]} (and {len(bad) - 1} more) after training batch "
            f"{pl_module.batches_seen - 1}; the last checkpoint on disk is the last good one. Fix: lower the "
            "learning rates or resume from that checkpoint"
        )

    def check(self, pl_module: LightningModule) -> None:
        self._check_losses(pl_module)
        self._check_weights(pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The batches since the last periodic check (an epoch need not be a multiple of it) are checked before
        # evaluation metrics are computed from the weights they produced.
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.check(pl_module)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        self._check_weights(pl_module)  # no collective here: see the class docstring
