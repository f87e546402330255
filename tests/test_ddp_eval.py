"""Evaluation independent of the process count: gan-eval of one checkpoint on 1, 2 and 3 gloo processes
gives the same test numbers and the same validation estimate (the samples do not depend on the count).

The default suite compares 3 processes with 1 (the uneven case: the third rank gets no sample batch); the
2-process run is in the slow set (pytest -m slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from lightning import Callback

from tests.helpers import run_cli, tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
SEED = 5  # not gan-eval's default (1234): gan-eval must sample with the checkpoint's
# 200 samples in batches of 64: four batches, the last one short; on 3 processes the third rank gets none.
# The validation settings are the run's (debug=fast), which gan-eval does not take from the checkpoint.
PARZEN = ["callbacks.parzen.sample_batch_size=64", "callbacks.parzen.val_samples=200", "callbacks.parzen.val_points=null",
          "callbacks.parzen.select_points=100"]  # fmt: skip
QUALITY = ["callbacks.quality.if_missing=error", "callbacks.quality.test_samples=200", "callbacks.quality.sample_batch_size=64",
           "callbacks.quality.kid_subsets=10", "callbacks.quality.kid_subset_size=100"]  # fmt: skip


class ValidationEstimateAtTest(Callback):
    """Runs the parzen callback's validation hook in gan-eval's test stage: val/parzen_ll as a run computes it
    when it validates, on gan-eval's number of processes (a run resumed on another count)."""

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        from gan.callbacks.parzen import ParzenLogLikelihood

        next(c for c in trainer.callbacks if isinstance(c, ParzenLogLikelihood)).on_validation_epoch_end(trainer, pl_module)


@pytest.fixture(scope="module")
def checkpoint(tiny_mnist_root, tmp_path_factory) -> Path:
    """A checkpoint of a 1-process run (seed 5), written as gan-train writes it, and a feature network."""
    from hydra.utils import instantiate
    from lightning import Trainer, seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint
    from omegaconf import OmegaConf

    from gan.callbacks.run_config import StoreRunConfig
    from gan.train_features import train_feature_network
    from tests.helpers import compose_train

    folder = tmp_path_factory.mktemp("ddp_eval")
    threads = torch.get_num_threads()
    try:
        cfg = compose_train(["debug=fast", f"seed={SEED}", *tiny_data_overrides(tiny_mnist_root), *PARZEN[:1]])
        seed_everything(SEED)
        stored = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data")}
        stored["seed"], stored["callbacks"] = cfg.seed, {"parzen": OmegaConf.to_container(cfg.callbacks.parzen, resolve=True)}
        saving = ModelCheckpoint(dirpath=folder, filename="epoch_0", monitor="val/parzen_ll", mode="max")
        trainer = Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=5, limit_val_batches=1, logger=False,
                          enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                          callbacks=[instantiate(cfg.callbacks.parzen), saving, StoreRunConfig(stored)])  # fmt: skip
        trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
        features = compose_train([*tiny_data_overrides(tiny_mnist_root), f"paths.cache_dir={folder / 'cache'}",
                                  "features.epochs=1", "features.batch_size=64", "extras.print_config=false"],
                                 config_name="train_features")  # fmt: skip
        train_feature_network(features)
    finally:
        torch.set_num_threads(threads)
    return Path(saving.best_model_path)


# The process counts compared with one process.
OTHER_COUNTS = [pytest.param(2, marks=pytest.mark.slow), 3]


@pytest.fixture(scope="module")
def evaluate(checkpoint, tiny_mnist_root):
    """gan-eval's JSON line on a number of processes, each count run once in this module."""
    results: dict[int, dict] = {}

    def evaluation(devices: int) -> dict:
        if devices in results:
            return results[devices]
        trainer = ["trainer=ddp_cpu", f"trainer.devices={devices}"] if devices > 1 else ["trainer.accelerator=cpu"]
        run = run_cli("gan-eval", f"ckpt_path={checkpoint}", f"data.root={tiny_mnist_root}", *trainer, *PARZEN, *QUALITY,
                      f"paths.cache_dir={checkpoint.parent / 'cache'}", f"hydra.run.dir={checkpoint.parent / f'eval{devices}'}",
                      "+callbacks.val_estimate._target_=tests.test_ddp_eval.ValidationEstimateAtTest",
                      cwd=checkpoint.parent, env=ENV)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert devices == 1 or f"MEMBER: {devices}/{devices}" in run.stdout + run.stderr
        results[devices] = json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])
        return results[devices]

    return evaluation


def test_gan_eval_on_one_process_samples_with_the_checkpoints_seed_and_protocol(evaluate, checkpoint, tiny_mnist_root):
    from gan.metrics.checkpoint_parzen import CheckpointParzen

    single = evaluate(1)
    assert single["parzen"]["num_centres"] == 200 and single["quality"]["n_samples"] == 200
    # The checkpoint's own seed (5, not gan-eval's 1234) and protocol: its run's test stage, in one process.
    assert single["parzen"]["ll"] == pytest.approx(CheckpointParzen(checkpoint, str(tiny_mnist_root)).test().ll, abs=1e-9)


@pytest.mark.parametrize("devices", OTHER_COUNTS)
def test_gan_eval_gives_the_same_test_numbers_on_more_processes(devices, evaluate):
    single, many = evaluate(1), evaluate(devices)
    assert many["parzen"]["ll"] == pytest.approx(single["parzen"]["ll"], abs=1e-4)  # float64, before logging
    assert many["test/parzen_ll"] == pytest.approx(single["test/parzen_ll"], abs=1e-4)
    assert many["test/parzen_sigma"] == single["test/parzen_sigma"]
    assert many["test/parzen_se"] == pytest.approx(single["test/parzen_se"], abs=1e-4)
    for key in ("fid", "kid", "precision", "recall", "inception_score", "classes_covered"):
        assert many[f"test/{key}"] == pytest.approx(single[f"test/{key}"], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("devices", [1, *OTHER_COUNTS])
def test_validation_estimate_of_a_checkpoint_is_the_same_on_any_number_of_processes(devices, evaluate, checkpoint):
    """A run resumed on another number of processes compares its val/parzen_ll with numbers computed alike."""
    stored = torch.load(checkpoint, map_location="cpu", weights_only=False)
    logged = next(float(s["current_score"]) for s in stored["callbacks"].values() if s.get("monitor") == "val/parzen_ll")
    assert evaluate(devices)["val/parzen_ll"] == pytest.approx(logged, abs=1e-4), devices
    assert evaluate(devices)["val/parzen_sigma"] == evaluate(1)["val/parzen_sigma"]
