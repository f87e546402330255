"""Sweeps, the submitit launcher (SLURM's code path, run locally), Optuna, and W&B offline."""

from __future__ import annotations

import json

import pytest

from gan.loggers import wandb_should_run_offline
from tests.helpers import run_cli, tiny_data_overrides


def _multirun(tmp_path, root, *args):
    sweep = tmp_path / "sweep"
    result = run_cli("gan-train", "-m", "debug=fast", f"hydra.sweep.dir={sweep}", *tiny_data_overrides(root), *args,
                     cwd=tmp_path)  # fmt: skip
    return result, sweep


def test_multirun_sweep_gives_each_job_its_own_folder_and_result(tiny_mnist_root, tmp_path):
    result, sweep = _multirun(tmp_path, tiny_mnist_root, "model.k=1,2", "seed=1,2", "test=false")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        seen.add(tuple(line for line in overrides.splitlines() if "model.k" in line or "seed=" in line))
        assert "val/parzen_ll" in json.loads((job / "metrics.json").read_text())
    assert len(seen) == 4


def test_one_failing_job_does_not_stop_the_sweep(tiny_mnist_root, tmp_path):
    result, sweep = _multirun(tmp_path, tiny_mnist_root, "model.k=0,1", "test=false")
    assert result.returncode != 0
    assert "model.k=0 is invalid" in result.stderr
    assert (sweep / "0" / "FAILED").read_text().startswith("ConfigError: model.k=0 is invalid")
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file() and not (sweep / "1" / "FAILED").exists()
    # the failing job says why in one line, not a traceback; the sweep ends with a table of its jobs
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "model.k=0" in line] == [
        "error: model.k=0 is invalid: must be an integer >= 1 (e.g. model.k=1)"]
    table = result.stdout[result.stdout.index("sweep sweep: 2 job(s), 1 failed"):].splitlines()  # relative to cwd
    assert table[1].split() == ["job", "overrides", "status", "val/parzen_ll", "folder"]
    assert table[2].split()[:3] == ["0", "model.k=0", "failed:"] and table[2].endswith("sweep/0")
    assert table[3].split()[:3] == ["1", "model.k=1", "ok"] and table[3].endswith("sweep/1")
    assert sorted(p.name for p in (sweep / "0").iterdir()) == [".hydra", "FAILED"]  # its overrides and its reason


def test_submitit_launcher_runs_a_two_job_sweep(tiny_mnist_root, tmp_path):
    result, sweep = _multirun(tmp_path, tiny_mnist_root, "hydra/launcher=local", "seed=1,2", "test=false")
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    assert (sweep / ".submitit").is_dir()


def test_slurm_launcher_config_follows_the_trainer(tmp_path):
    from tests.helpers import compose_train

    cfg = compose_train(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                         "hydra.launcher.partition=gpu", f"paths.output_dir={tmp_path}"], return_hydra=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_node) == (4, 2, 4)
    assert launcher.partition == "gpu" and launcher.max_num_timeout > 0
    assert "export GAN_AUTO_RESUME=true" in launcher.setup


def test_optuna_search_returns_the_optimised_metric(tiny_mnist_root, tmp_path):
    sweep = tmp_path / "optuna"
    result = run_cli("gan-train", "hparams_search=mnist_optuna", "debug=fast", "test=false", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}",
                     *tiny_data_overrides(tiny_mnist_root), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = (sweep / "optimization_results.yaml").read_text()
    best = float(results.split("best_value:")[1].split()[0])
    trial_values = [json.loads((sweep / j / "metrics.json").read_text())["val/parzen_ll"] for j in ("0", "1")]
    assert best == pytest.approx(max(trial_values), rel=1e-6)


def test_wandb_offline_run_holds_the_logged_metrics_and_samples(tiny_mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("gan-train", "debug=fast", "logger=[csv,wandb]", f"hydra.run.dir={run_dir}",
                     *tiny_data_overrides(tiny_mnist_root), env={"WANDB_MODE": "offline"}, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    (records,) = offline_run.glob("run-*.wandb")
    data = records.read_bytes()  # W&B's protobuf records keep metric names verbatim
    for key in (b"train/d_loss", b"train/d_real", b"val/parzen_ll", b"test/parzen_ll"):
        assert key in data, key
    assert list((offline_run / "files" / "media" / "images").glob("samples_*.png"))
    assert (run_dir / "csv" / "metrics.csv").is_file()


def test_wandb_goes_offline_without_a_key_or_a_network(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_should_run_offline() == (True, "no W&B API key (WANDB_API_KEY or ~/.netrc)")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_HOST", "127.0.0.1")  # nothing listens on 443 here
    offline, why = wandb_should_run_offline()
    assert offline and "unreachable" in why
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_should_run_offline() == (False, "WANDB_MODE=online")


# Every experiment composes and instantiates in tests/test_configs.py (fast); this trains and tests each one.
@pytest.mark.slow
def test_every_experiment_runs_end_to_end_in_one_multirun(tmp_path):
    """`gan-train -m experiment=glob(*) debug=fast` on tiny files of every dataset (the toy has no files, so the
    root comes from GAN_DATA_ROOT rather than a data.root override; md5 checks are off for these files)."""
    from pathlib import Path

    from tests.helpers import write_every_dataset

    root = write_every_dataset(tmp_path / "data")
    sweep = tmp_path / "sweep"
    result = run_cli("gan-train", "-m", "experiment=glob(*)", "debug=fast", f"hydra.sweep.dir={sweep}",
                     env={"GAN_DATA_ROOT": str(root), "GAN_DATA_VERIFY": "false"}, cwd=tmp_path, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    experiments = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    assert len(jobs) == len(experiments) >= 8
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert "test/parzen_ll" in metrics and (job / "checkpoints" / "last.ckpt").is_file(), job
