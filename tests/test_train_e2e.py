"""gan-train end to end, as a subprocess, on a tiny dataset in MNIST's IDX format (and briefly on real MNIST)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from tests.helpers import SHARED_DATA, run_cli, tiny_data_overrides


def test_gan_train_writes_checkpoints_samples_logs_and_metrics(tiny_mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("gan-train", "debug=fast", f"hydra.run.dir={run_dir}", *tiny_data_overrides(tiny_mnist_root),
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "samples" / "epoch_0000.png").is_file() and (run_dir / "samples" / "epoch_0001.png").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    losses = [float(row[key]) for row in rows for key in ("train/d_loss", "train/g_loss") if row.get(key)]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    # The paper's schedule as logged: lr / 1.000004 after every step, momentum 0.5 in the first epoch.
    logged = [row for row in rows if row.get("train/lr_g")]
    for net in "gd":
        lrs = [float(row[f"train/lr_{net}"]) for row in logged]
        assert lrs == pytest.approx([0.1 / 1.000004 ** (i + 1) for i in range(4)], rel=1e-6)  # logged as float32
        assert [float(row[f"train/momentum_{net}"]) for row in logged] == [0.5] * 4
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test/parzen_ll"]) and metrics["test/parzen_se"] > 0
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["gan_counters"] == {"batches_seen": 4, "g": 4, "d": 4}  # 400 training images, batch 100
    assert checkpoint["gan_config"]["model"]["update_scheme"] == "simultaneous"


def test_gan_train_runs_from_any_directory_and_module_entry_point(tiny_mnist_root, tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "elsewhere"
    result = subprocess.run(
        [sys.executable, "-m", "gan.train", "debug=fast", "experiment=mnist_algorithm1", "test=false",
         f"hydra.run.dir={run_dir}", *tiny_data_overrides(tiny_mnist_root)],
        cwd="/", capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def _train_metrics(run_dir, root, *extra):
    result = run_cli("gan-train", "debug=fast", "test=false", f"hydra.run.dir={run_dir}", *tiny_data_overrides(root), *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def test_bf16_mixed_precision_trains_like_fp32(fast_run, tiny_mnist_root, tmp_path):
    fp32 = json.loads((fast_run / "metrics.json").read_text())  # the same command without the precision override
    bf16 = _train_metrics(tmp_path / "bf16", tiny_mnist_root, "trainer.precision=bf16-mixed")
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/parzen_ll"):
        assert math.isfinite(bf16[key])
        assert abs(bf16[key] - fp32[key]) < 0.02 * max(1.0, abs(fp32[key])), key
    weights = torch.load(tmp_path / "bf16" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())  # master weights stay fp32


@pytest.mark.slow
def test_torch_compile_switch_trains_like_eager(fast_run, tiny_mnist_root, tmp_path):
    eager = json.loads((fast_run / "metrics.json").read_text())  # the same command without model.compile
    compiled = _train_metrics(tmp_path / "compiled", tiny_mnist_root, "model.compile=true")
    for key in ("train/d_loss", "train/g_loss", "val/parzen_ll"):
        assert abs(compiled[key] - eager[key]) < 1e-3 * max(1.0, abs(eager[key])), key


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"real MNIST not found under {SHARED_DATA}")
def test_on_real_mnist_the_discriminator_learns_to_separate_real_from_generated(tmp_path):
    """The paper's recipe, 400 batches: D starts undecided (tiny init), then D(x) rises and D(G(z)) falls."""
    run_dir = tmp_path / "run"
    result = run_cli("gan-train", "experiment=mnist_paper", f"data.root={SHARED_DATA}", "trainer.max_epochs=1",
                     "+trainer.limit_train_batches=400", "+trainer.limit_val_batches=0", "trainer.log_every_n_steps=20",
                     "test=false", "callbacks=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [row for row in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if row.get("train/d_real")]
    d_real, d_fake = ([float(row[key]) for row in rows] for key in ("train/d_real", "train/d_fake"))
    assert len(rows) == 20
    assert abs(d_real[0] - 0.5) < 0.01 and abs(d_fake[0] - 0.5) < 0.01
    late_real, late_fake = sum(d_real[-3:]) / 3, sum(d_fake[-3:]) / 3
    assert late_real > 0.8 and late_fake < 0.3, (d_real, d_fake)
    assert float(rows[-1]["train/d_loss"]) < math.log(2) < float(rows[-1]["train/g_loss"])
