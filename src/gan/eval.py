"""gan-eval: the full evaluation protocol (Parzen, and any other test-time callbacks) on a checkpoint.

    gan-eval ckpt_path=outputs/2026-11-23/12-00-00/checkpoints/last.ckpt [data.root=...]

The model and data configs come from the checkpoint's own run (stored in it by gan-train), so no
experiment is needed; `experiment=...` (or `model=`/`data=`) on the command line uses that config instead.
Results are printed as one JSON line and saved next to the checkpoint as <name>.eval.json. A run trained
with model.ema_decay is scored with its EMA generator; `use_ema=false` scores the raw G instead (saved as
<name>.raw.eval.json).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from gan.config import validate_config
from gan.utils.run import user_errors_reported

log = logging.getLogger("gan")
EXPLICIT_CHOICES = ("experiment=", "model=", "data=", "model/", "+experiment=")


def _user_chose_config() -> bool:
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:
        return False
    return any(o.lstrip("~+").startswith(EXPLICIT_CHOICES) for o in overrides)


def config_for_checkpoint(cfg: DictConfig, checkpoint: dict) -> DictConfig:
    """Use the model and data of the run that wrote the checkpoint, with this machine's data.root."""
    from gan.callbacks.run_config import StoreRunConfig

    stored = checkpoint.get(StoreRunConfig.KEY)
    if stored is None or _user_chose_config():
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        data_root = cfg.data.root
        cfg.model = OmegaConf.create(stored["model"])
        cfg.data = OmegaConf.create(stored["data"])
        cfg.data.root = data_root
    return cfg


def write_json_atomically(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def evaluate(cfg: DictConfig) -> dict:
    # Torch and Lightning load inside, so that `gan-eval --help` and config errors stay fast.
    from hydra.utils import instantiate
    from lightning import seed_everything

    from gan.callbacks.parzen import ParzenLogLikelihood
    from gan.callbacks.quality import SampleQuality
    from gan.utils.checkpoints import architecture_errors_explained, load_checkpoint
    from gan.utils.instantiate import instantiate_callbacks, instantiate_loggers

    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = config_for_checkpoint(cfg, checkpoint)
    del checkpoint
    validate_config(cfg)
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.sample_from_ema = cfg.use_ema
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_loggers(cfg.get("logger")) or False)
    with architecture_errors_explained(cfg.ckpt_path):
        trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)

    generator = "ema" if model.generator_ema is not None and cfg.use_ema else "raw"
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    results = {"ckpt_path": str(cfg.ckpt_path), "generator": generator, **metrics}
    for callback in callbacks:
        if isinstance(callback, ParzenLogLikelihood) and callback.last_result is not None:
            results["parzen"] = callback.last_result.as_dict()
        if isinstance(callback, SampleQuality) and callback.report() is not None:
            results["quality"] = callback.report()
    if trainer.is_global_zero:
        # The raw G of an EMA run gets its own file, so both results can sit beside the checkpoint.
        raw_of_ema_run = model.generator_ema is not None and not cfg.use_ema
        out = Path(cfg.ckpt_path).with_suffix(".raw.eval.json" if raw_of_ema_run else ".eval.json")
        write_json_atomically(out, results)
        print(json.dumps(results, sort_keys=True))
        log.info("saved %s", out)
    return results


@hydra.main(version_base="1.3", config_path="pkg://gan.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors_reported():
        evaluate(cfg)


if __name__ == "__main__":
    main()
