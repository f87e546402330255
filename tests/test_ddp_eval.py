"""Evaluation independent of the process count: one checkpoint scored by gan-eval on 1, 2 and 3 gloo
processes, and its validation estimate on 1 and 2, give the same numbers (the samples do not depend on it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli, tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
# 200 samples in batches of 64: four batches, the last one short; on 3 processes the third rank has none.
SAMPLING = ["callbacks.parzen.sample_batch_size=64", "callbacks.parzen.test_samples=200"]
QUALITY = ["callbacks.quality.test_samples=200", "callbacks.quality.sample_batch_size=64", "callbacks.quality.kid_subsets=10",
           "callbacks.quality.kid_subset_size=100", "callbacks.quality.feature_batch_size=64"]  # fmt: skip
SEED = 5  # not gan-eval's default (1234): gan-eval must take the checkpoint's


def validate_on_processes(ckpt_path: str, data_root: str, devices: int, out: str) -> None:
    """val/parzen_ll of a checkpoint on `devices` gloo processes (Lightning re-launches this file for the others)."""
    from lightning import Trainer

    from gan.callbacks.parzen import ParzenLogLikelihood
    from gan.utils.checkpoints import model_and_data_from_checkpoint

    model, data, stored = model_and_data_from_checkpoint(ckpt_path, data_root)
    settings = {k: v for k, v in stored["callbacks"]["parzen"].items() if k != "_target_"}
    trainer = Trainer(accelerator="cpu", devices=devices, strategy="ddp", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=1, callbacks=[ParzenLogLikelihood(**settings)])  # fmt: skip
    trainer.validate(model, datamodule=data)
    if trainer.is_global_zero:
        Path(out).write_text(json.dumps({k: float(v) for k, v in trainer.callback_metrics.items()}))


def _json_line(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def checkpoint(tiny_mnist_root, tmp_path_factory) -> Path:
    """One epoch of a 1-process run (seed 5) and a feature network for the quality metrics."""
    from gan.train_features import train_feature_network
    from tests.helpers import compose_train

    folder = tmp_path_factory.mktemp("ddp_eval")
    run = run_cli("gan-train", "debug=fast", f"seed={SEED}", "test=false", f"hydra.run.dir={folder / 'run'}",
                  *tiny_data_overrides(tiny_mnist_root), "callbacks.parzen.sample_batch_size=64", cwd=folder, env=ENV)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    cfg = compose_train([*tiny_data_overrides(tiny_mnist_root), f"paths.cache_dir={folder / 'cache'}", "features.epochs=1",
                         "features.batch_size=64", "extras.print_config=false"], config_name="train_features")  # fmt: skip
    threads = torch.get_num_threads()
    try:
        train_feature_network(cfg)
    finally:
        torch.set_num_threads(threads)
    return folder / "run" / "checkpoints" / "epoch_0000.ckpt"


def test_gan_eval_gives_the_same_parzen_and_quality_on_1_2_and_3_processes(checkpoint, tiny_mnist_root):
    from gan.metrics.checkpoint_parzen import CheckpointParzen

    cache = checkpoint.parents[2] / "cache"
    results = {}
    for devices in (1, 2, 3):
        trainer = ["trainer=ddp_cpu", f"trainer.devices={devices}"] if devices > 1 else ["trainer.accelerator=cpu"]
        run = run_cli("gan-eval", f"ckpt_path={checkpoint}", f"data.root={tiny_mnist_root}", *trainer, *SAMPLING, *QUALITY,
                      f"paths.cache_dir={cache}", "callbacks.quality.if_missing=error",
                      f"hydra.run.dir={checkpoint.parents[2] / f'eval{devices}'}", cwd=checkpoint.parents[2], env=ENV)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        if devices > 1:
            assert f"MEMBER: {devices}/{devices}" in run.stdout + run.stderr
        results[devices] = _json_line(run.stdout)
    single = results[1]
    assert single["parzen"]["num_centres"] == 200 and single["quality"]["n_samples"] == 200
    for devices in (2, 3):
        assert results[devices]["test/parzen_ll"] == pytest.approx(single["test/parzen_ll"], abs=1e-4)
        assert results[devices]["test/parzen_sigma"] == single["test/parzen_sigma"]
        assert results[devices]["test/parzen_se"] == pytest.approx(single["test/parzen_se"], abs=1e-4)
        for key in ("fid", "kid", "precision", "recall", "classes_covered"):
            assert results[devices][f"test/{key}"] == pytest.approx(single[f"test/{key}"], rel=1e-4, abs=1e-6), key
    # The checkpoint's own seed (5) and protocol: what its run's test stage would report, in one process.
    assert single["test/parzen_ll"] == pytest.approx(CheckpointParzen(checkpoint, str(tiny_mnist_root)).test().ll, abs=1e-9)
    other_seed = run_cli("gan-eval", f"ckpt_path={checkpoint}", f"data.root={tiny_mnist_root}", "trainer.accelerator=cpu",
                         *SAMPLING, "seed=6", f"paths.cache_dir={cache}", f"hydra.run.dir={checkpoint.parents[2] / 'eval_seed'}",
                         cwd=checkpoint.parents[2], env=ENV)  # fmt: skip
    assert other_seed.returncode == 0, other_seed.stderr[-3000:]
    assert _json_line(other_seed.stdout)["test/parzen_ll"] != pytest.approx(single["test/parzen_ll"], abs=1e-3)


def test_validation_estimate_of_a_checkpoint_is_the_same_on_1_and_2_processes(checkpoint, tiny_mnist_root, tmp_path):
    """A run resumed on another number of processes compares its val/parzen_ll with numbers computed alike."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gan.metrics.checkpoint_parzen import CheckpointParzen

    stored = torch.load(checkpoint, map_location="cpu", weights_only=False)
    logged = next(float(s["current_score"]) for k, s in stored["callbacks"].items() if k.startswith(ModelCheckpoint.__name__))
    parzen = CheckpointParzen(checkpoint, str(tiny_mnist_root))
    assert parzen.validation(parzen.parzen.val_samples).ll == pytest.approx(logged, abs=1e-6)  # the run's own number

    out = tmp_path / "val.json"
    command = [sys.executable, __file__, str(checkpoint), str(tiny_mnist_root), "2", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, **ENV})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "MEMBER: 2/2" in run.stdout + run.stderr
    assert json.loads(out.read_text())["val/parzen_ll"] == pytest.approx(logged, abs=1e-4)


if __name__ == "__main__":
    validate_on_processes(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
