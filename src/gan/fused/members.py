"""What keeps each member of a fused run a run of its own: its callbacks, loggers, metrics and checkpoints.

Lightning drives one Trainer over the fused model. Each member's callbacks (checkpoints, samples, figures,
Parzen, the divergence guard, the run config) are the ones its config names, built as for a run alone; they
see a `MemberTrainer`, the fused trainer as that member's run would look (its module, data, loggers, metrics and
checkpoint writer), and the member's own GAN module with its share of the weights (`FusedGAN.sync_members`).
So the files in each job's folder are the ones a run alone writes, and `gan-eval` scores its checkpoints.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from omegaconf import DictConfig

from gan.errors import GANError
from gan.fused import NotFusable
from gan.module import GAN

log = logging.getLogger("gan")

# Hooks passed on to the members' callbacks; the weights are copied into the members before each (not per batch).
# A member callback overriding any other hook is refused (NotFusable): it would silently not run.
PER_RUN_HOOKS = ("setup", "on_fit_start", "on_sanity_check_start", "on_sanity_check_end", "on_train_start",
                 "on_train_epoch_start", "on_validation_start", "on_validation_epoch_start", "on_validation_end",
                 "on_train_epoch_end", "on_train_end", "on_fit_end", "teardown")  # fmt: skip
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
# on_save_checkpoint: when a member checkpoint is cut; the test hooks: in each member's own test Trainer.
FORWARDED = {*PER_RUN_HOOKS, *PER_BATCH_HOOKS, "on_validation_epoch_end", "on_exception", "on_save_checkpoint",
             "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end", "on_test_batch_start",
             "on_test_batch_end", "state_dict", "load_state_dict"}  # fmt: skip
HOOKS = [name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown", "state_dict",
                                                                              "load_state_dict")]  # fmt: skip


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


@dataclass
class MemberRun:
    """One job of a fused group: its config, folder, module, datamodule, callbacks, loggers and what it logged."""

    index: int  # the job's number in the sweep
    position: int  # its place among the fused members
    cfg: DictConfig
    module: GAN
    datamodule: Any
    callbacks: list[Callback]
    loggers: list
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    failure: GANError | None = None
    stopped: bool = False  # a callback of this member set trainer.should_stop (e.g. early stopping)
    trainer: MemberTrainer | None = None
    _row: dict[str, float] = field(default_factory=dict)  # logged since the last flush: one row per step
    hooked: dict[str, list[Callback]] = field(default_factory=dict)  # hook -> its callbacks overriding it

    @property
    def folder(self) -> Path:
        return Path(self.cfg.paths.output_dir)

    @property
    def name(self) -> str:
        return f"job {self.index} (seed={self.cfg.seed})"

    def log_dict(self, metrics: dict, *args, **kwargs) -> None:
        """The member module's `log`/`log_dict`: into this run's metrics, and its loggers at the next flush."""
        values = {name: torch.as_tensor(value).detach().float().cpu() for name, value in metrics.items()}
        self.metrics.update(values)
        self._row.update({name: float(value) for name, value in values.items()})

    def log(self, name: str, value, *args, **kwargs) -> None:
        self.log_dict({name: value})

    def flush_logs(self) -> None:
        """What was logged in one hook, as one row at the step a run alone logs it at (Lightning's logger
        connector also writes a step's metrics together)."""
        if not self._row or self.trainer is None:
            return
        row, self._row = {**self._row, "epoch": self.trainer.current_epoch}, {}
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in self.loggers:
            logger.log_metrics(row, step=step)
            logger.save()


class MemberTrainer:
    """The fused trainer as one member's callbacks see it: everything but what belongs to the member's run."""

    def __init__(self, trainer: Trainer, run: MemberRun, save) -> None:
        self._fused, self._run, self._save = trainer, run, save

    def __getattr__(self, name: str):  # anything not the member's own: the fused run's (epoch, step, strategy...)
        return getattr(self._fused, name)

    lightning_module = model = property(lambda self: self._run.module)
    datamodule = property(lambda self: self._run.datamodule)
    loggers = property(lambda self: self._run.loggers)
    logger = property(lambda self: self._run.loggers[0] if self._run.loggers else None)
    callbacks = property(lambda self: self._run.callbacks)
    checkpoint_callbacks = property(lambda self: [c for c in self._run.callbacks if isinstance(c, Checkpoint)])
    checkpoint_callback = property(lambda self: next(iter(self.checkpoint_callbacks), None))
    callback_metrics = logged_metrics = progress_bar_metrics = property(lambda self: self._run.metrics)
    default_root_dir = log_dir = property(lambda self: str(self._run.folder))

    @property
    def should_stop(self) -> bool:
        return self._run.stopped or self._fused.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        """A member's callback stopping training (early stopping) stops this member: its weights stay as they are
        now, written to its last.ckpt; the group goes on while any member trains."""
        if value and not self._run.stopped:
            self._fused.lightning_module.sync_members([self._run.position])  # its weights as they are now
            checkpoint = self.checkpoint_callback
            if checkpoint is not None and checkpoint.dirpath and getattr(checkpoint, "save_last", False):
                self._save(self._run, Path(checkpoint.dirpath) / "last.ckpt")  # as a run alone ends: its last state
            self._run.stopped = True
            log.info("%s stopped at epoch %d (a callback of its own asked)", self._run.name, self.current_epoch + 1)

    def save_checkpoint(self, filepath, weights_only: bool = False, storage_options=None) -> None:
        self._save(self._run, filepath, weights_only)


class MemberRuns(Callback):
    """Passes the fused run's hooks on to every member's callbacks, and writes the members' checkpoints."""

    def __init__(self, runs: list[MemberRun]) -> None:
        self.runs = runs
        for run in runs:
            unsupported = [f"{type(c).__name__}.{hook}" for c in run.callbacks for hook in HOOKS
                           if _overrides(c, hook) and hook not in FORWARDED]  # fmt: skip
            if unsupported:
                raise NotFusable(f"callback hook {unsupported[0]} is not passed on to the members of a fused run")
            # Lightning runs checkpoint callbacks last, after the callbacks that log what they monitor
            run.callbacks.sort(key=lambda c: isinstance(c, Checkpoint))
            run.hooked = {hook: [c for c in run.callbacks if _overrides(c, hook)] for hook in FORWARDED}  # once, not per batch
        self._dump: tuple[tuple, dict, dict] | None = None

    @property
    def active(self) -> list[MemberRun]:
        return [run for run in self.runs if run.failure is None and not run.stopped]

    def live_positions(self) -> list[int]:
        """The members whose own weights still follow the fused model (not failed, not stopped)."""
        return [run.position for run in self.active]

    def _each(self, hook: str, pl_module, *args, slice_batch: bool = False) -> None:
        callers = [(run, run.hooked[hook]) for run in self.active if run.hooked[hook]]
        if callers and hook not in PER_BATCH_HOOKS:  # weights copied only where a callback will look at them
            pl_module.sync_members(self.live_positions())
        for run, callbacks in callers:
            member_args, i = args, run.position
            if slice_batch:  # (outputs,) batch, batch_idx with a leading members dimension
                *outputs, batch, batch_idx = args
                member_args = (*[{k: v[i] for k, v in (o or {}).items()} for o in outputs], batch[i], batch_idx)
            for callback in callbacks:
                try:
                    getattr(callback, hook)(run.trainer, run.module, *member_args)
                except GANError as error:  # this member stops; the others train on
                    run.failure = error
                    log.error("%s failed: %s", run.name, error)
                    break
            run.flush_logs()
        if not self.active:  # every member failed or stopped: so does the group (each keeps its own reason)
            pl_module.trainer.should_stop = True

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str = "fit") -> None:
        for run in self.runs:
            run.trainer = MemberTrainer(trainer, run, self._save_member)
            run.module.trainer = run.trainer
            # instance attributes shadow LightningModule.log/log_dict: a member's logs go to its own run
            run.module.log, run.module.log_dict = run.log, run.log_dict
        self._each("setup", pl_module, stage)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._each("on_train_batch_start", pl_module, batch, batch_idx, slice_batch=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for run in self.active:
            run.module.batches_seen, run.module.steps = pl_module.batches_seen, dict(pl_module.steps)
        if (stats := getattr(pl_module, "logged_stats", None)) is not None:
            pl_module.logged_stats = None
            for run in self.active:
                run.log_dict({name: (value[run.position] if torch.is_tensor(value) else value)
                              for name, value in stats.items()})  # fmt: skip
                run.flush_logs()
        self._each("on_train_batch_end", pl_module, outputs, batch, batch_idx, slice_batch=True)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        stats = pl_module.take_evaluation("val")
        if not trainer.sanity_checking:  # Lightning logs nothing from the sanity check either
            for run in self.active:  # flushed with what the members' callbacks log now (Parzen): one row
                run.log_dict({name: value[run.position] for name, value in stats.items()})
        self._each("on_validation_epoch_end", pl_module)
        for run in self.active:
            run.flush_logs()
        scores = [run.metrics["val/parzen_ll"] for run in self.active if "val/parzen_ll" in run.metrics]
        if scores and not trainer.sanity_checking:  # the progress bar shows the members' mean
            pl_module.log("val/parzen_ll", torch.stack(scores).mean(), logger=False)

    def on_exception(self, trainer, pl_module, exception) -> None:
        for run in self.active:
            for callback in run.hooked["on_exception"]:
                callback.on_exception(run.trainer, run.module, exception)

    # --- state: each member's callbacks, inside the fused checkpoint -----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {str(run.index): {"callbacks": _callback_states(run.callbacks), "stopped": run.stopped,
                                 "failure": None if run.failure is None else str(run.failure)} for run in self.runs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for run in self.runs:
            saved = state.get(str(run.index), {})
            for callback in run.callbacks:
                if callback.state_key in saved.get("callbacks", {}):
                    callback.load_state_dict(saved["callbacks"][callback.state_key])
            run.stopped = saved.get("stopped", False)  # a member that stopped or failed before stays so
            if saved.get("failure"):
                run.failure = GANError(saved["failure"])

    # --- a member's checkpoint: its share of a fused one --------------------------------------------------------
    def _save_member(self, run: MemberRun, filepath, weights_only: bool = False) -> None:
        trainer = run.trainer._fused
        key = (trainer.global_step, trainer.lightning_module.batches_seen, weights_only)
        if self._dump is None or self._dump[0] != key:  # every member saving at this step shares one dump
            self._dump = (key, trainer._checkpoint_connector.dump_checkpoint(weights_only=weights_only),
                          self._shared_states(trainer))  # fmt: skip
        trainer.lightning_module.sync_members(self.live_positions())
        checkpoint = member_checkpoint(self._dump[1], run, len(self.runs), shared_callbacks=self._dump[2])
        trainer.strategy.save_checkpoint(checkpoint, filepath)

    def _shared_states(self, trainer: Trainer) -> dict[str, Any]:
        """The fused-level callbacks a run alone has too (the Timer: its elapsed time resumes with the member)."""
        own = {self.state_key, *(c.state_key for c in trainer.checkpoint_callbacks)}
        return {key: value for key, value in _callback_states(trainer.callbacks).items() if key not in own}


def _passed_on(hook: str):
    def call(self: MemberRuns, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        self._each(hook, pl_module, *args, *kwargs.values())  # teardown(stage=...): by keyword

    call.__name__ = hook
    return call


for _hook in PER_RUN_HOOKS[1:]:  # the hooks with no batch, the same for every member (setup is above)
    setattr(MemberRuns, _hook, _passed_on(_hook))


def _callback_states(callbacks: list[Callback]) -> dict[str, Any]:
    states = {callback.state_key: callback.state_dict() for callback in callbacks}
    return {key: state for key, state in states.items() if state}


def member_checkpoint(fused: dict[str, Any], run: MemberRun, members: int, shared_callbacks: dict) -> dict[str, Any]:
    """The checkpoint a run alone would write at this point, cut out of the fused run's: member `i`'s slice of every
    stacked tensor (weights, EMA, optimizer state), the loops as they are, its callbacks' and loader's states."""
    i = run.position
    own = run.module.state_dict()
    state_dict = {}
    for name, tensor in own.items():
        stacked = fused["state_dict"][name]
        state_dict[name] = (stacked[i] if stacked.shape == (members, *tensor.shape) else stacked).clone()
    optimizer_states = [
        {"param_groups": copy.deepcopy(opt["param_groups"]),
         "state": {index: {name: value[i].clone() if torch.is_tensor(value) and value.dim() >= 1 else value
                           for name, value in param_state.items()} for index, param_state in opt["state"].items()}}
        for opt in fused.get("optimizer_states", [])
    ]  # fmt: skip
    loops = copy.deepcopy(fused.get("loops", {}))
    loader_states = loops.get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
    if loader_states:  # the fused training loader's state holds every member's loader state
        loops["fit_loop"]["state_dict"]["combined_loader"] = [state["members"][i] for state in loader_states]
    checkpoint = {key: value for key, value in fused.items() if key not in ("state_dict", "optimizer_states")}
    checkpoint.update(state_dict=state_dict, loops=loops, callbacks={**shared_callbacks, **_callback_states(run.callbacks)})
    if "optimizer_states" in fused:  # absent from a weights-only checkpoint
        checkpoint["optimizer_states"] = optimizer_states
    run.module.on_save_checkpoint(checkpoint)
    for callback in run.callbacks:
        callback.on_save_checkpoint(run.trainer, run.module, checkpoint)
    return checkpoint
