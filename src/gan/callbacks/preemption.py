"""Preemption and timeouts lose no work: a checkpoint at the next batch boundary, then the job stops."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

log = logging.getLogger("gan")


class PreemptionCheckpoint(Callback):
    """On SIGUSR2 (SLURM's warning `signal_delay_s` before the time limit, which submitit answers by requeueing the
    job) or SIGTERM (`scontrol requeue`, preemption, `scancel`, a plain `kill`), write `last.ckpt` at the end of
    the running training batch, then stop there and hand the signal to the handlers installed before this one.

    The signal handler only notes the signal: a checkpoint written from inside it could catch the module halfway
    through an optimizer step. At the batch end the checkpoint is written through the trainer (atomically, by the
    checkpoint IO plugin), exactly where a step-triggered ModelCheckpoint save writes it, so the resumed run (
    auto_resume, which a requeued SLURM job sets) goes on from the next batch with bit-identical weights. At the next
    boundary (the next batch start, validation start or the end of training, so that the batch's metrics are logged
    first) the previous handler is called: submitit's requeues the job and exits; Lightning's notes SIGTERM; for a
    default-action signal the process exits with status 128 + signal number. Submitit's own handler would exit at
    once, before any checkpoint; Lightning's SLURM auto-requeue (SIGUSR1) is off in submitit jobs
    (gan.utils.cluster), so exactly one mechanism requeues.

    A signal during validation is acted on at the end of the next training batch (or of training): keep
    `signal_delay_s` longer than a validation pass. Under DDP every rank writes (and stops) at the same batch: the
    ranks agree on the signal each batch through a small CPU all-reduce.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signals: tuple[str, ...] = ("SIGUSR2", "SIGTERM")):
        self.path = Path(dirpath) / filename
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]  # no SIGUSR2 on Windows
        self._received = 0  # the first signal noted by the handler, 0: none
        self._saved_for = 0  # the signal whose checkpoint is written; the run stops at the next boundary
        self._previous: dict[int, Any] = {}  # the handlers this one replaced
        self._installed = False
        self._group = None  # the process group the ranks agree through (None: one process)

    # --- handlers -------------------------------------------------------------------------------------------------
    def _note(self, signum: int, frame) -> None:
        self._received = self._received or signum

    def _install(self) -> None:
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():  # Python runs handlers in the main thread only
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._note)
        self._installed = True

    def _restore(self) -> None:
        if self._installed:
            for signum, handler in self._previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
            self._installed = False

    # --- hooks ----------------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._received = self._saved_for = 0
        self._group = self._agreement_group(trainer)
        self._install()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not self._saved_for and (signum := self._agreed_signal()):
            trainer.save_checkpoint(self.path)
            self._saved_for = signum
            if trainer.is_global_zero:
                log.warning("%s: saved %s after %d training batches (epoch %d); stopping", signal.Signals(signum).name,
                            self.path, getattr(pl_module, "batches_seen", trainer.global_step), trainer.current_epoch + 1)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self._stop_if_saved()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._stop_if_saved()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A signal since the last batch (during the last validation): the epoch-end last.ckpt holds all the training.
        if not self._saved_for and (signum := self._agreed_signal()):
            self._saved_for = signum
        self._stop_if_saved()
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()

    # --- stopping -------------------------------------------------------------------------------------------------
    def _stop_if_saved(self) -> None:
        signum = self._saved_for
        if not signum:
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        self._saved_for = 0
        self._restore()  # from here on, signals go straight to the handlers that were there before
        if previous == signal.SIG_IGN:
            return
        if callable(previous):
            previous(signum, None)  # submitit's SIGUSR2 handler requeues and exits; Lightning's SIGTERM one returns
        raise SystemExit(128 + signum)

    # --- agreement between DDP ranks ------------------------------------------------------------------------------
    @staticmethod
    def _agreement_group(trainer: Trainer):
        if trainer.world_size < 2 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return None
        if torch.distributed.get_backend() == "gloo":
            return torch.distributed.group.WORLD
        return torch.distributed.new_group(backend="gloo")  # a CPU flag: no device sync per batch

    def _agreed_signal(self) -> int:
        if self._group is None:
            return self._received
        flag = torch.tensor([self._received], dtype=torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._group)
        return int(flag.item())
