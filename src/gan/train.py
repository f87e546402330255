"""gan-train: compose a config with Hydra, train, then evaluate.

    gan-train                                   # the paper's MNIST GAN (experiment=mnist_paper)
    gan-train experiment=mnist_algorithm1 model.k=2 trainer.max_epochs=5 seed=3
    gan-train -m model.k=1,2,5 seed=1,2,3       # a sweep, one folder per job
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gan.config import refuse_renamed_keys, validate_config
from gan.errors import ConfigError
from gan.utils.cluster import register_launchers
from gan.utils.run import print_config, user_errors_reported

log = logging.getLogger("gan")
register_launchers()  # hydra/launcher=slurm, hydra/launcher=fused


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from, refusing to train over another run's checkpoints."""
    from gan.utils.checkpoints import load_checkpoint

    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    requested = cfg.get("ckpt_path")
    testing_only = not cfg.get("train", True)
    if last.exists() and not (testing_only and requested):  # testing a named checkpoint overwrites no checkpoint
        # The folder's own progress wins over the checkpoint a job was started from: a requeued SLURM job repeats
        # its command line, and training from ckpt_path again would overwrite everything since.
        requested_last = bool(requested) and Path(requested).resolve() == last.resolve()
        if cfg.get("auto_resume") or requested_last:
            if requested and not requested_last:
                log.info("auto_resume: %s holds this run's latest state; ckpt_path=%s is not used", last, requested)
            check_same_selection_metric(cfg, load_checkpoint(last), last)
            log.info("resuming from %s", last)
            return str(last)
        raise ConfigError(
            f"{last.parent} already holds checkpoints of an earlier run, which training would overwrite; pass "
            f"auto_resume=true to continue it (or ckpt_path={last}), or choose a new hydra.run.dir"
        )
    if requested:
        check_same_selection_metric(cfg, load_checkpoint(requested), requested)
        return str(requested)
    return None


# What val/parzen_ll depends on besides the weights (the test protocol does not pick checkpoints).
SELECTION_KEYS = ("val_samples", "val_points", "select_points", "sigmas")


def check_same_selection_metric(cfg: DictConfig, checkpoint: dict, path) -> None:
    """A resumed run keeps its best val/parzen_ll, so the epochs after the resume must be scored the same way."""
    from gan.callbacks.run_config import StoreRunConfig

    before = ((checkpoint.get(StoreRunConfig.KEY) or {}).get("callbacks") or {}).get("parzen")
    now = (cfg.get("callbacks") or {}).get("parzen")
    if not cfg.get("train", True) or not before or now is None:
        return
    now = OmegaConf.to_container(now, resolve=True)
    changed = [key for key in SELECTION_KEYS if key in before and before[key] != now.get(key)]
    if changed:
        settings = " ".join(f"callbacks.parzen.{key}={json.dumps(before[key]).replace(' ', '')}" for key in changed)
        raise ConfigError(
            f"{path} was scored with {settings}, this config differs, and its best val/parzen_ll would be compared "
            f"with numbers computed another way; to resume it, add {settings}"
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Build everything the config names, fit, test; returns the final metrics."""
    started = time.time()
    validate_config(cfg)
    # Torch and Lightning load only after validation, so a bad override fails in about a second.
    from hydra.utils import instantiate
    from lightning import seed_everything

    from gan.utils.console import one_line_per_record

    one_line_per_record()

    from gan.callbacks.run_config import StoreRunConfig
    from gan.utils.checkpoints import architecture_errors_explained
    from gan.utils.cluster import cluster_plugins
    from gan.utils.instantiate import build, instantiate_callbacks, instantiate_loggers

    if cfg.get("extras", {}).get("print_config"):
        print_config(cfg)
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_ckpt_path(cfg)

    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model")
    run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), StoreRunConfig(run_config)]
    loggers = instantiate_loggers(cfg.get("logger"))
    plugins = [*instantiate(cfg.trainer.get("plugins") or []), *cluster_plugins()]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, plugins=plugins)
    for logger in loggers:
        logger.log_hyperparams(run_config)

    metrics: dict[str, float] = {}
    try:
        if cfg.get("train", True):
            with architecture_errors_explained(ckpt_path):
                trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            metrics.update(_metrics(trainer))
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            test_ckpt = best or (None if cfg.get("train", True) else ckpt_path)
            with architecture_errors_explained(test_ckpt):  # the summary below shows the results, not a table
                trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=False, verbose=False)
            metrics.update(_metrics(trainer))
    finally:
        _finish_wandb(loggers)

    if trainer.is_global_zero:
        record_run(Path(cfg.paths.output_dir), metrics, trainer.current_epoch, started)
    return metrics


def record_run(folder: Path, metrics: dict[str, float], epochs: int, started: float) -> None:
    """A finished run's metrics.json (an earlier attempt's FAILED goes: it was resumed to the end), and its summary."""
    from gan.utils.console import log_run_summary

    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (folder / "FAILED").unlink(missing_ok=True)
    log_run_summary(folder, metrics, epochs, started)


def _metrics(trainer) -> dict[str, float]:
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


def _finish_wandb(loggers) -> None:
    # Each job of a multirun must be its own W&B run (Lightning leaves the run open).
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


@hydra.main(version_base="1.3", config_path="pkg://gan.conf", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    metrics: dict[str, float] = {}  # stays empty when a sweep's job fails (reported, and the sweep goes on)
    with user_errors_reported():
        metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


def main() -> float | None:
    with user_errors_reported():  # before Hydra, which would only say that a moved key is unknown
        refuse_renamed_keys(sys.argv[1:])
    return _main()


if __name__ == "__main__":
    main()
