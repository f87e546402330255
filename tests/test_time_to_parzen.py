"""scripts/time_to_parzen.py: staged training, a scored checkpoint every few epochs, the first to reach a target."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli, tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "time_to_parzen.py"


def script_module():
    spec = importlib.util.spec_from_file_location("time_to_parzen", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(epochs: int, ll: float) -> dict:
    return {"epochs": epochs, "ll": ll, "se": 2.0, "ema_decay": 0.9999, "training_seconds": epochs * 0.6,
            "wall_seconds": epochs * 0.7}  # fmt: skip


def test_the_summary_names_the_first_checkpoint_at_the_target_and_whether_it_held(tmp_path):
    script = script_module()
    rows = [row(25, 220.0), row(50, 225.3), row(75, 224.9), row(100, 226.0)]
    result = script.summary(rows, 225.0)
    assert result["first_reached"]["epochs"] == 50 and result["held_to_the_end"] is False
    assert result["best"]["epochs"] == 100
    assert "First >= 225.0 nats at epoch 50 (225.3 +- 2.0): 30 s of training, 35 s of wall time; not held" in script.markdown(rows, result)
    assert script.summary(rows[2:], 225.0)["first_reached"]["epochs"] == 100
    assert script.summary(rows[3:], 225.0)["held_to_the_end"] is True
    missed = script.summary(rows, 230.0)
    assert missed["first_reached"] is None and "Not reached: 230.0 nats. Best: 226.0 at epoch 100." in script.markdown(rows, missed)
    # wall time counts only the time inside the recorded gan-train calls, in order
    calls = [{"start": 100.0, "wall_seconds": 10.0}, {"start": 500.0, "wall_seconds": 20.0}]
    assert script.wall_since_start(105.0, calls) == 5.0 and script.wall_since_start(503.0, calls) == 13.0
    assert script.wall_since_start(300.0, calls) is None
    # a call cut short with the script has no recorded end: its last write under the run folder stands for it
    written = tmp_path / "run" / "snapshots" / "epoch_0001.ckpt"
    written.parent.mkdir(parents=True)
    written.write_text("")
    os.utime(written, (112.0, 112.0))
    cut = script.with_ends([{"start": 100.0, "wall_seconds": None}, calls[1]], tmp_path / "run")
    assert cut == [{"start": 100.0, "wall_seconds": 12.0}, calls[1]]
    # reached at the first scored checkpoint while earlier ones went unscored: an upper bound, and said so
    bounded = script.summary(rows[1:], 225.0, unscored=[25])
    assert bounded["first_is_an_upper_bound"] and "at or before epoch 50" in script.markdown(rows[1:], bounded)
    assert "epochs 25-25 were not scored" in script.markdown(rows[1:], bounded)
    assert not script.summary(rows[2:], 225.0, unscored=[25])["first_is_an_upper_bound"]  # 75 scored and missed it
    # epochs due a checkpoint that has none are named
    assert script.missing_snapshots(rows, [], 25, 150) == [125, 150]
    gaps = script.summary(rows, 225.0, missing=[125, 150])
    assert "No checkpoint was written at epochs 125, 150" in script.markdown(rows, gaps)
    # a folder whose first call failed before training (a mistyped override) takes corrected settings
    script.check_settings(tmp_path / "out", {"every": 1, "overrides": ["modle.k=2"]})
    script.check_settings(tmp_path / "out", {"every": 1, "overrides": ["model.k=2"]})
    assert json.loads((tmp_path / "out" / "settings.json").read_text())["overrides"] == ["model.k=2"]


def test_stages_train_one_run_on_and_every_snapshot_is_scored_as_gan_eval_scores_it(tiny_mnist_root, tmp_path):
    out = tmp_path / "ttp"
    command = [sys.executable, str(SCRIPT), "--target=-1e9", "--stages", "2:0.9", "3:0.99", "--every", "1",
               "--out", str(out), "--data-root", str(tiny_mnist_root), "--device", "cpu", "--", "debug=fast",
               "callbacks.rich_progress_bar.refresh_rate=0",
               *[o for o in tiny_data_overrides(tiny_mnist_root) if not o.startswith("data.root")]]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "time_to_parzen.json").read_text())
    rows = report["rows"]
    # one run, trained on by the second stage: one snapshot an epoch, the EMA decay of the stage that wrote it
    assert [r["epochs"] for r in rows] == [1, 2, 3] and [r["ema_decay"] for r in rows] == [0.9, 0.9, 0.99]
    assert [c["stage"] for c in json.loads((out / "calls.json").read_text())] == ["2:0.9", "3:0.99"]
    times = [r["training_seconds"] for r in rows]
    walls = [r["wall_seconds"] for r in rows]
    assert 0 < times[0] < times[1] < times[2] and 0 < walls[0] < walls[1] < walls[2] and times[2] < walls[2]
    assert report["first_reached"]["epochs"] == 1 and report["held_to_the_end"] is True
    assert report["missing_epochs"] == [] and report["first_is_an_upper_bound"] is False
    assert (out / "time_to_parzen.md").read_text().endswith("held at every later checkpoint.\n")
    # the score is gan-eval's full protocol with the run's seed, to the last digit
    evaluated = run_cli("gan-eval", f"ckpt_path={rows[2]['checkpoint']}", "seed=1", *tiny_data_overrides(tiny_mnist_root),
                        f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scored = json.loads(Path(rows[2]["checkpoint"]).with_suffix(".eval.json").read_text())
    assert scored["test/parzen_ll"] == pytest.approx(rows[2]["ll"], abs=1e-4)
    assert torch.load(rows[2]["checkpoint"], weights_only=False)["gan_config"]["model"]["ema_decay"] == 0.99

    # the same call again trains nothing and reuses the scores; other settings are refused, the folder untouched
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "stage " not in again.stdout
    assert json.loads((out / "time_to_parzen.json").read_text())["rows"] == rows
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*"))
    other = [*command[: command.index("--every") + 1], "2", *command[command.index("--every") + 2 :]]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].endswith("other settings (differing: every). Fix: pass a new --out, "
                                                            "or the same arguments as before")  # fmt: skip
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*")) == before


@pytest.mark.parametrize(("arguments", "message"), [
    (["--stages", "600:0.9999", "500:0.99995"], "--stages must grow in epochs (got 600 500)"),
    (["--stages", "600"], "'600' is not EPOCHS:EMA_DECAY"),
    (["--stages", "600:1.5"], "'600:1.5' is not EPOCHS:EMA_DECAY"),
    (["--every", "0"], "'0' is not an integer >= 1"),
])  # fmt: skip
def test_bad_arguments_are_refused_in_one_line_before_anything_is_written(tmp_path, arguments, message):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), *arguments],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "out").exists()
