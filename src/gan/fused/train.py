"""Train a group of jobs that differ only in their seed as one fused model (hydra/launcher=fused calls this).

`FusedGroup(cfgs, ...)` builds every member from its own config exactly as `gan.train.train` builds a run
(seeded, then data, model, callbacks), so its initial weights and data order are those of that run alone, and
refuses what cannot be fused (NotFusable) before any file is written. `run()` fits the fused model, then tests
each member on its own, through a Trainer of its own config and the checkpoint its callbacks chose (the test a
run alone does), and records it (metrics.json, the run summary).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gan.config import validate_config
from gan.errors import ConfigError, GANError
from gan.fused import NotFusable

log = logging.getLogger("gan")

# Callbacks about the process rather than one run: one for the group (from the first job's config).
GROUP_LEVEL = ("lightning.pytorch.callbacks.ProgressBar", "lightning.pytorch.callbacks.ModelSummary",
               "lightning.pytorch.callbacks.Timer", "gan.callbacks.PreemptionCheckpoint")  # fmt: skip


def group_folder(sweep_dir: Path, job_numbers: list[int], overrides: list[list[str]]) -> Path:
    """The group's own folder, named by its jobs and a digest of their seeds: the same sweep run again (with
    auto_resume=true, or a larger trainer.max_epochs) finds it, and other seeds in the same sweep folder never
    resume it."""
    seeds = [next((o.split("=", 1)[1] for o in job if o.split("=", 1)[0].lstrip("+~") == "seed"), "") for job in overrides]
    return sweep_dir / f"fused_{job_numbers[0]}-{job_numbers[-1]}_{hashlib.sha1(json.dumps(seeds).encode()).hexdigest()[:8]}"


def check_fusable(cfgs: list[DictConfig], resuming: bool = False) -> None:
    """What the fused step cannot do, refused before anything is built (the launcher then runs the jobs alone)."""
    first = cfgs[0]
    if OmegaConf.select(first, "trainer.devices", default=1) not in (1, "1") or \
            OmegaConf.select(first, "trainer.num_nodes", default=1) != 1:  # fmt: skip
        raise NotFusable("fused training uses one device; these jobs ask for another count "
                         "(trainer.devices / trainer.num_nodes other than 1)")
    if OmegaConf.select(first, "model.compile", default=False):  # not tried: vmap under torch.compile
        raise NotFusable("model.compile=true is not supported for fused members (model.cuda_graph=true is)")
    if any("wandb" in str(node.get("_target_", "")).lower() for node in (first.get("logger") or {}).values()):
        raise NotFusable("the W&B logger keeps one run per process, so fused jobs cannot each have their own")
    if not first.get("train", True) or first.get("ckpt_path"):
        raise NotFusable("train=false or a ckpt_path: these jobs start from checkpoints of their own")
    for cfg in cfgs if not resuming else []:  # a resumed group wrote its members' checkpoints itself
        if (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").exists():
            raise NotFusable(f"{cfg.paths.output_dir} already holds checkpoints of a run alone, which the run "
                             "alone resumes (auto_resume=true) or refuses to overwrite")  # fmt: skip


def _is_group_level(callback) -> bool:
    from hydra.utils import get_class

    return isinstance(callback, tuple(get_class(path) for path in GROUP_LEVEL))


class FusedGroup:
    """The members of one fused run, built; `run()` trains and tests them."""

    def __init__(self, cfgs: list[DictConfig], job_numbers: list[int], group_dir: Path) -> None:
        from lightning import seed_everything

        from gan.callbacks.run_config import StoreRunConfig
        from gan.fused.data import FusedDataModule
        from gan.fused.members import MemberRun, MemberRuns
        from gan.fused.module import FusedGAN
        from gan.utils.instantiate import build, instantiate_callbacks

        self.cfgs, self.job_numbers, self.group_dir = cfgs, job_numbers, group_dir
        self.last = group_dir / "checkpoints" / "last.ckpt"
        if self.last.exists() and not cfgs[0].get("auto_resume"):
            raise ConfigError(f"{group_dir} holds the checkpoint of an earlier fused run of these jobs; pass "
                              "auto_resume=true to continue it, or choose a new hydra.sweep.dir")  # fmt: skip
        for cfg in cfgs:
            validate_config(cfg)
        check_fusable(cfgs, resuming=self.last.exists())
        built = []
        for cfg in cfgs:
            seed_everything(cfg.seed, workers=True)  # as gan.train: the seed, then data and model, in that order
            built.append((build(cfg.data, "data"), build(cfg.model, "model")))
        self.model = FusedGAN([module for _, module in built])  # refuses networks and objectives it cannot fuse
        self.data = FusedDataModule([datamodule for datamodule, _ in built])
        self.runs = []
        for position, (cfg, number, (datamodule, module)) in enumerate(zip(cfgs, job_numbers, built)):
            callbacks = [*instantiate_callbacks(cfg.get("callbacks")),
                         StoreRunConfig(OmegaConf.to_container(cfg, resolve=True))]  # fmt: skip
            self.runs.append(MemberRun(number, position, cfg, module, datamodule, callbacks, []))
        self.group_callbacks = [c for c in self.runs[0].callbacks if _is_group_level(c)]
        for run in self.runs:
            run.callbacks = [c for c in run.callbacks if not _is_group_level(c)]
        self.member_runs = MemberRuns(self.runs)  # refuses member callbacks with hooks a fused run cannot call

    def run(self) -> list[dict[str, float] | GANError]:
        """Fit all members as one model, then test and record each; each job's metrics, or its error."""
        from hydra.utils import instantiate
        from lightning.pytorch.callbacks import Timer

        from gan.callbacks import PreemptionCheckpoint
        from gan.utils.cluster import cluster_plugins
        from gan.utils.console import one_line_per_record
        from gan.utils.instantiate import build, instantiate_loggers
        from gan.utils.run import print_config

        started = time.time()
        one_line_per_record()
        if self.cfgs[0].get("extras", {}).get("print_config"):
            print_config(self.cfgs[0])
        log.info("jobs %s train together, fused into one model", ", ".join(map(str, self.job_numbers)))
        checkpoints = self.group_dir / "checkpoints"
        for callback in self.group_callbacks:
            if isinstance(callback, PreemptionCheckpoint):
                callback.path = checkpoints / callback.path.name  # a signal saves the group's state, the resume point
        callbacks = [self.member_runs, *self.group_callbacks, _group_last_checkpoint(self.cfgs[0], checkpoints)]
        for run in self.runs:
            run.loggers = instantiate_loggers(run.cfg.get("logger"))
            for logger in run.loggers:
                logger.log_hyperparams(OmegaConf.to_container(run.cfg, resolve=True))
        plugins = [*instantiate(self.cfgs[0].trainer.get("plugins") or []), *cluster_plugins()]
        trainer = build(self.cfgs[0].trainer, "trainer", callbacks=callbacks, logger=False, plugins=plugins)
        resume = str(self.last) if self.last.exists() else None
        if resume:
            log.info("resuming the fused jobs %s from %s", ", ".join(map(str, self.job_numbers)), resume)
        trainer.fit(self.model, datamodule=self.data, ckpt_path=resume)
        self.model.sync_members(self.member_runs.live_positions())
        timers = [c for c in self.group_callbacks if isinstance(c, Timer)]  # its state is in the members' checkpoints
        results = []
        for run in self.runs:
            try:
                results.append(run.failure or _test_and_record(run, timers, trainer.current_epoch, started))
            except GANError as error:  # this member's test failed; the others' results stand
                results.append(error)
        return results


def _group_last_checkpoint(cfg: DictConfig, folder: Path):
    """The group's own last.ckpt (all members' stacked state, the resume point): the jobs' model_checkpoint with its
    save points, writing last.ckpt only, into the group's folder."""
    from gan.callbacks import LastAndBestCheckpoint
    from gan.utils.instantiate import build

    node = OmegaConf.select(cfg, "callbacks.model_checkpoint")
    only_last = {"monitor": None, "save_top_k": 0, "save_last": True}
    if node is None:
        return LastAndBestCheckpoint(dirpath=str(folder), enable_version_counter=False, **only_last)
    return build(node, "callbacks.model_checkpoint", dirpath=str(folder), **only_last)


def _test_and_record(run, shared_callbacks: list, epochs: int, started: float) -> dict[str, float]:
    """Test the member as a run alone is tested (its best checkpoint, or its last weights), log the test metrics at
    the step a run alone logs them, and record the run as `gan-train` does."""
    from gan.train import record_run
    from gan.utils.checkpoints import architecture_errors_explained
    from gan.utils.instantiate import build

    metrics = {name: float(value) for name, value in run.metrics.items()}
    if run.cfg.get("test", True):
        checkpoint = run.trainer.checkpoint_callback
        best = (checkpoint.best_model_path if checkpoint is not None else "") or None
        last = Path(checkpoint.dirpath) / "last.ckpt" if checkpoint is not None and checkpoint.dirpath else None
        if best is None and run.stopped and last is not None and last.exists():
            best = str(last)  # its state when it stopped (its module follows the fused model no more after a resume)
        for name in ("log", "log_dict"):  # the member logs through Lightning again, into the test trainer
            run.module.__dict__.pop(name, None)
        trainer = build(run.cfg.trainer, "trainer", callbacks=[*run.callbacks, *shared_callbacks], logger=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        with architecture_errors_explained(best):
            trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best, weights_only=False, verbose=False)
        tested = {name: float(value) for name, value in trainer.callback_metrics.items()}
        run.log_dict(tested)
        run.flush_logs()
        metrics.update(tested)
    for logger in run.loggers:
        logger.finalize("success")
    record_run(run.folder, metrics, epochs, started)
    return metrics
