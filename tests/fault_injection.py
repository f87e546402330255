"""Callbacks that tests add to real runs through Hydra (`+callbacks.x._target_=tests.fault_injection...`)."""

from __future__ import annotations

import os
import signal

import torch
from lightning import Callback


class KillAtBatch(Callback):
    """SIGKILL this process after training batch `batch` (1-based count): no clean-up, like a preempted node."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.batches_seen == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class SaveFinalWeights(Callback):
    """Write G and D weights at the end of training, to compare runs bit for bit."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, self.path)


class PoisonLossAtBatch(Callback):
    """Make the generator produce NaN from batch `batch` on (1-based), as a blown-up run would."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.batches_seen + 1 == self.batch:
            with torch.no_grad():
                next(pl_module.generator.parameters()).fill_(float("nan"))


class SaveRankState(Callback):
    """Each rank writes its weights at the start and end of training and its final metrics, to compare ranks."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def _save(self, trainer, pl_module, tag: str) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        torch.save({"state": state, "metrics": metrics}, f"{self.dirpath}/rank{trainer.global_rank}_{tag}.pt")

    def on_train_start(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module, "end")

    def on_test_end(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module, "test")


class PaceAndReport(Callback):
    """Sleep `seconds` after each training batch (`resumed_seconds` in a run resumed from a checkpoint) and write
    how many batches the run has trained to `path`, so that a test can signal a run (or a SLURM job) at a known
    point of an epoch. Changes no weight."""

    def __init__(self, path: str, seconds: float = 0.0, resumed_seconds: float = 0.0) -> None:
        self.path, self.seconds, self.resumed_seconds = path, seconds, resumed_seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        time.sleep(self.resumed_seconds if trainer.ckpt_path else self.seconds)
        if trainer.is_global_zero:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{pl_module.batches_seen}\n")
            os.replace(tmp, self.path)


class StopAtBatch(Callback):
    """Ask training to stop after training batch `batch` (1-based count), as early stopping does; only in the run
    of seed `seed` when given."""

    def __init__(self, batch: int, seed: int | None = None) -> None:
        self.batch, self.seed = batch, seed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.batches_seen == self.batch and self.seed in (None, pl_module.seed):
            trainer.should_stop = True
