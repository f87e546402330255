"""Train a group of jobs that differ only in their seed as one fused model (hydra/launcher=fused calls this).

Each member is built from its own config exactly as `gan.train.train` builds a run (seeded, then data, model,
callbacks, loggers), so its initial weights and data order are those of that run alone. After training, each
member is tested on its own, through a Trainer of its own config and the checkpoint its callbacks chose, and
writes its `metrics.json`: the test is the one a run alone does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gan.config import validate_config
from gan.errors import ConfigError, GANError
from gan.fused import NotFusable

log = logging.getLogger("gan")

# Callbacks about the process rather than one run: one for the group (from the first job's config).
GROUP_LEVEL = ("lightning.pytorch.callbacks.ProgressBar", "lightning.pytorch.callbacks.ModelSummary",
               "lightning.pytorch.callbacks.Timer", "gan.callbacks.PreemptionCheckpoint")  # fmt: skip


def _is_group_level(callback) -> bool:
    from hydra.utils import get_class

    return isinstance(callback, tuple(get_class(path) for path in GROUP_LEVEL))


def check_fusable(cfgs: list[DictConfig]) -> None:
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
    if not first.get("train", True):
        raise NotFusable("train=false has nothing to fuse")


def train_fused(cfgs: list[DictConfig], job_numbers: list[int], group_dir: Path) -> list[dict[str, float] | GANError]:
    """Fit the jobs' configs as one fused model, then test each; returns each job's metrics (or its error)."""
    for cfg in cfgs:
        validate_config(cfg)
    check_fusable(cfgs)
    last = group_dir / "checkpoints" / "last.ckpt"
    if last.exists() and not cfgs[0].get("auto_resume"):
        raise ConfigError(f"{group_dir} holds the checkpoint of an earlier fused run of these jobs; pass "
                          "auto_resume=true to continue it, or choose a new hydra.sweep.dir")  # fmt: skip
    resume = str(last) if last.exists() else None
    from lightning import seed_everything
    from lightning.pytorch.callbacks import Timer

    from gan.callbacks.run_config import StoreRunConfig
    from gan.fused.data import FusedDataModule
    from gan.fused.members import MemberRun, MemberRuns
    from gan.fused.module import FusedGAN
    from gan.utils.console import one_line_per_record
    from gan.utils.instantiate import build, instantiate_callbacks, instantiate_loggers

    one_line_per_record()
    built = []
    for cfg in cfgs:
        seed_everything(cfg.seed, workers=True)  # as gan.train: the seed, then data and model, in that order
        built.append((build(cfg.data, "data"), build(cfg.model, "model")))
    model = FusedGAN([module for _, module in built])  # refuses what cannot be fused, before any file is written
    data = FusedDataModule([datamodule for datamodule, _ in built])
    log.info("jobs %s train together, fused into one model", ", ".join(map(str, job_numbers)))
    runs: list[MemberRun] = []
    for position, (cfg, number, (datamodule, module)) in enumerate(zip(cfgs, job_numbers, built)):
        run_config = OmegaConf.to_container(cfg, resolve=True)
        callbacks = [*instantiate_callbacks(cfg.get("callbacks")), StoreRunConfig(run_config)]
        runs.append(MemberRun(number, position, cfg, module, datamodule, callbacks, []))
    group_callbacks = [c for c in runs[0].callbacks if _is_group_level(c)]
    for run in runs:
        run.callbacks = [c for c in run.callbacks if not _is_group_level(c)]
    checkpoints = group_dir / "checkpoints"
    group_callbacks = [_group_checkpoint(c, checkpoints) if _preemption(c) else c for c in group_callbacks]
    group_callbacks.append(_group_last_checkpoint(cfgs[0], checkpoints))
    member_runs = MemberRuns(runs)
    for run in runs:
        run.loggers = instantiate_loggers(run.cfg.get("logger"))
        for logger in run.loggers:
            logger.log_hyperparams(OmegaConf.to_container(run.cfg, resolve=True))
    trainer = build(cfgs[0].trainer, "trainer", callbacks=[member_runs, *group_callbacks], logger=False)
    if resume:
        log.info("resuming the fused jobs %s from %s", ", ".join(map(str, job_numbers)), resume)
    trainer.fit(model, datamodule=data, ckpt_path=resume)
    model.sync_members()
    timers = [c for c in group_callbacks if isinstance(c, Timer)]  # its state is in the members' checkpoints too
    return [run.failure if run.failure is not None else _test_alone(run, timers) for run in runs]


def _preemption(callback) -> bool:
    from gan.callbacks import PreemptionCheckpoint

    return isinstance(callback, PreemptionCheckpoint)


def _group_checkpoint(preemption, folder: Path):
    """The preemption callback writes the group's state, which the fused run resumes from."""
    preemption.path = folder / preemption.path.name
    return preemption


def _group_last_checkpoint(cfg: DictConfig, folder: Path):
    """The group's own last.ckpt (all members' stacked state, the resume point) at the members' save points."""
    from gan.callbacks import LastAndBestCheckpoint

    node = OmegaConf.select(cfg, "callbacks.model_checkpoint")
    every = {key: node.get(key) for key in ("every_n_epochs", "every_n_train_steps")} if node is not None else {}
    return LastAndBestCheckpoint(dirpath=str(folder), monitor=None, save_top_k=0, save_last=True,
                                 enable_version_counter=False, **{k: v for k, v in every.items() if v is not None})


def _test_alone(run, shared_callbacks: list) -> dict[str, float]:
    """Test the member as a run alone is tested (its best checkpoint, or its last weights), then write metrics.json."""
    from gan.utils.checkpoints import architecture_errors_explained
    from gan.utils.instantiate import build

    for name in ("log", "log_dict"):  # the member logs through Lightning again
        run.module.__dict__.pop(name, None)
    metrics = {name: float(value) for name, value in run.metrics.items()}
    cfg = run.cfg
    if cfg.get("test", True):
        best = next((c.best_model_path for c in run.trainer.checkpoint_callbacks if c.best_model_path), None)
        trainer = build(cfg.trainer, "trainer", callbacks=[*run.callbacks, *shared_callbacks], logger=run.loggers or False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        with architecture_errors_explained(best):
            trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best, weights_only=False, verbose=False)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
    (run.folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (run.folder / "FAILED").unlink(missing_ok=True)  # an earlier attempt's, now resumed to the end
    log.info("%s: %s", run.name, ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("test/")))
    return metrics
