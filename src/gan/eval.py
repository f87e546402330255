"""gan-eval: the full evaluation protocol (Parzen, and any other test-time callbacks) on a checkpoint.

    gan-eval ckpt_path=outputs/2026-11-23/12-00-00/checkpoints/last.ckpt [data.root=...]

The model and data configs and the test-time Parzen protocol come from the checkpoint's own run (stored in it
by gan-train), so no experiment is needed; `experiment=...` (or `model=`/`data=`) on the command line uses that
config instead; `model.<key>=...`, `data.<key>=...` (e.g. data.eval_batch_size=100) and
`callbacks.parzen.<key>=...` override one setting of the checkpoint's model, data or protocol.
The samples are drawn with the run's own seed, so the numbers repeat its test stage on any number of
processes; `seed=N` on the command line draws other ones.
Results are printed as one JSON line and saved next to the checkpoint as <name>.eval.json. A run trained
with model.ema_decay is scored with its EMA generator; `use_ema=false` scores the raw G instead (saved as
<name>.raw.eval.json).

Only evaluate checkpoints you trust: a checkpoint is unpickled (`weights_only=False`) and the config stored
in it is instantiated (`_target_` names any importable callable), so a crafted file runs code of its
author's choosing (docs/security.md).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from gan.config import refuse_renamed_keys, validate_config
from gan.errors import CheckpointError
from gan.utils.files import write_json_atomically
from gan.utils.run import user_errors_reported

log = logging.getLogger("gan")
EXPLICIT_CHOICES = ("experiment=", "model=", "data=", "model/", "+experiment=")


# The test-time Parzen protocol is part of the experiment (TFD picks sigma on its whole validation split).
PARZEN_PROTOCOL_KEYS = ("test_samples", "test_points", "test_select_points", "sigmas")


def _command_line() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside a Hydra app (tests)
        return []


def config_for_checkpoint(cfg: DictConfig, checkpoint: dict, overrides: list[str] | None = None) -> DictConfig:
    """Use the seed, model, data and Parzen protocol of the run that wrote the checkpoint, with the local
    data.root; what the command line (`overrides`, by default gan-eval's own) sets explicitly wins."""
    from gan.callbacks.run_config import StoreRunConfig

    overrides = _command_line() if overrides is None else overrides
    sets = lambda *prefixes: any(o.lstrip("~+").startswith(prefixes) for o in overrides)  # noqa: E731
    stored = StoreRunConfig.stored(checkpoint)
    if stored is None:
        return cfg
    cfg = cfg.copy()
    if stored.get("seed") is not None and not sets("seed="):
        cfg.seed = stored["seed"]  # the evaluation samples the run itself drew (callbacks' seed: ${seed})
    if sets(*EXPLICIT_CHOICES):
        return cfg
    with open_dict(cfg):
        data_root = cfg.data.get("root")
        cfg.model = OmegaConf.create(stored["model"])
        cfg.data = OmegaConf.create(stored["data"])
        if "root" in cfg.data and data_root is not None:  # generated data (the toy) has no root
            cfg.data.root = data_root
        stored_parzen = (stored.get("callbacks") or {}).get("parzen") or {}
        if "parzen" in (cfg.get("callbacks") or {}):
            for key in PARZEN_PROTOCOL_KEYS:
                if key in stored_parzen and not sets(f"callbacks.parzen.{key}="):
                    cfg.callbacks.parzen[key] = stored_parzen[key]
        _apply(cfg, [o for o in overrides if o.lstrip("~+").startswith(("model.", "data.")) and not o.startswith("data.root=")])
    return cfg


def _apply(cfg: DictConfig, overrides: list[str]) -> None:
    """Overrides of single model/data keys, applied again on top of the checkpoint's model and data."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            OmegaConf.select(cfg, parent).pop(leaf, None)
        else:
            OmegaConf.update(cfg, key, override.value(), merge=False)


def report(results: dict, out: Path) -> None:
    """Prints the result as one JSON line, then saves it to `out`; a failed save loses nothing printed."""
    print(json.dumps(results, sort_keys=True), flush=True)
    try:
        write_json_atomically(out, results)
    except OSError as error:
        raise CheckpointError(
            f"could not save {out} ({error.strerror or error}); the result is the JSON line printed above. Fix: make "
            "the checkpoint's folder writable, or copy the checkpoint to a writable folder and evaluate it there"
        ) from error
    log.info("saved %s", out)


def evaluate(cfg: DictConfig) -> dict:
    # Torch and Lightning load inside, so that `gan-eval --help` and config errors stay fast.
    from hydra.utils import instantiate
    from lightning import seed_everything

    from gan.callbacks.parzen import ParzenLogLikelihood
    from gan.callbacks.quality import SampleQuality
    from gan.utils.checkpoints import architecture_errors_explained, load_checkpoint
    from gan.utils.console import one_line_per_record
    from gan.utils.instantiate import build, instantiate_callbacks, instantiate_loggers

    one_line_per_record()
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = config_for_checkpoint(cfg, checkpoint)
    del checkpoint
    validate_config(cfg)
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)

    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model")
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
        report(results, out)
    return results


@hydra.main(version_base="1.3", config_path="pkg://gan.conf", config_name="eval")
def _main(cfg: DictConfig) -> None:
    with user_errors_reported(run_folder=False):  # the result goes beside the checkpoint; no folder of its own
        evaluate(cfg)


def main() -> None:
    with user_errors_reported(run_folder=False):  # before Hydra, which would only say that a moved key is unknown
        refuse_renamed_keys(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
