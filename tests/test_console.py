"""What gan-train and gan-eval print and leave behind: a short console, a summary, one epoch numbering, no litter.

docs/console.md describes the same contract for users.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gan.callbacks import EpochCheckpoint
from gan.callbacks.progress import ThrottledRichProgressBar
from gan.utils import run as run_utils
from gan.utils.console import run_summary
from gan.utils.sweep import job_rows, table
from tests.helpers import compose_train, run_cli, tiny_data_overrides, write_tiny_mnist

MAX_LINES = 45
# The paper's MNIST GAN on 30 batches of 100 images, with a Parzen estimate small enough for seconds.
SMALL_PARZEN = ["callbacks.parzen.val_samples=300", "callbacks.parzen.val_points=100", "callbacks.parzen.select_points=100",
                "callbacks.parzen.test_samples=300", "callbacks.parzen.test_points=100",
                "callbacks.parzen.test_select_points=100"]  # fmt: skip


@pytest.fixture(scope="module")
def thirty_batches(tmp_path_factory):
    """One real gan-train of 30 batches (3,000 training images, batch 100), as a user runs it."""
    tmp = tmp_path_factory.mktemp("console")
    root = write_tiny_mnist(tmp / "data", n_train=3200, n_test=200)
    run_dir = tmp / "run"
    result = run_cli("gan-train", *tiny_data_overrides(root), "trainer.accelerator=cpu", "trainer.max_epochs=1",
                     "+trainer.limit_train_batches=30", "trainer.log_every_n_steps=10", *SMALL_PARZEN,
                     f"hydra.run.dir={run_dir}", cwd=tmp, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return SimpleNamespace(result=result, run_dir=run_dir, root=root, tmp=tmp,
                           lines=[line for line in (result.stdout + result.stderr).splitlines() if line.strip()])  # fmt: skip


def test_a_30_batch_run_prints_at_most_45_lines_each_once_without_tips_flops_or_config(thirty_batches):
    lines = thirty_batches.lines
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    repeated = {line: n for line, n in Counter(lines).items() if n > 1}
    assert not repeated, repeated  # Lightning's records once, not once plain and once with a timestamp
    text = "\n".join(lines)
    assert "Tip" not in text and "litlogger" not in text and "FLOPs" not in text
    assert "task_name:" not in text and "_target_" not in text  # the config only with extras.print_config=true
    assert (thirty_batches.run_dir / ".hydra" / "config.yaml").is_file()  # ... and always saved
    assert any(line.startswith("parameters: generator (MLPGenerator) 2.5 M, discriminator (MaxoutDiscriminator)")
               for line in lines)  # fmt: skip


def test_the_bar_shows_losses_d_outputs_and_parzen_and_the_run_ends_with_a_summary(thirty_batches):
    text = "\n".join(thirty_batches.lines)
    for label in ("d_loss:", "g_loss:", "D(x):", "D(G(z)):", "parzen:"):
        assert label in text, text
    summary = next(i for i, line in enumerate(thirty_batches.lines) if line.startswith("done in"))
    assert thirty_batches.lines[summary].endswith("1 epoch(s) trained: run")  # relative to where it was started
    rest = "\n".join(thirty_batches.lines[summary:])
    assert "test/parzen_ll" in rest and "D(x)" in rest
    assert "samples:     run/samples/ (epoch_0000.png: untrained G ... epoch_0001.png)" in rest
    assert "checkpoints: run/checkpoints/ (epoch_0001.ckpt, last.ckpt)" in rest
    assert "normal for mnist_paper" in rest  # a newcomer's first, collapsed-looking epoch


def test_one_epoch_numbering_from_the_bar_to_samples_figures_and_checkpoints(thirty_batches):
    run_dir = thirty_batches.run_dir
    assert any(line.startswith("Epoch 1/1") for line in thirty_batches.lines)  # not Lightning's "Epoch 0/0"
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["epoch_0000.png", "epoch_0001.png"]
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["figure2_epoch_0001.png", "figure3_epoch_0001.png"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch_0001.ckpt", "last.ckpt"]
    assert torch.load(run_dir / "checkpoints" / "epoch_0001.ckpt", weights_only=False)["epoch"] == 0  # Lightning's index


def test_checkpoint_names_count_epochs_from_one():
    checkpoint = EpochCheckpoint(filename="epoch_{epoch:04d}", auto_insert_metric_name=False)
    assert checkpoint.format_checkpoint_name({"epoch": torch.tensor(0)}) == "epoch_0001.ckpt"
    assert checkpoint.format_checkpoint_name({"epoch": torch.tensor(24)}) == "epoch_0025.ckpt"
    snapshots = compose_train(["callbacks=[default,snapshots]", "paths.output_dir=/out"]).callbacks.snapshots
    assert snapshots._target_ == "gan.callbacks.EpochCheckpoint"


def test_no_lock_file_is_left_and_gan_eval_leaves_no_folder(thirty_batches):
    assert not (thirty_batches.run_dir / ".lock").exists()
    elsewhere = thirty_batches.tmp / "elsewhere"
    elsewhere.mkdir()
    checkpoint = thirty_batches.run_dir / "checkpoints" / "last.ckpt"
    result = run_cli("gan-eval", f"ckpt_path={checkpoint}", f"data.root={thirty_batches.root}", "trainer.accelerator=cpu",
                     cwd=elsewhere, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(elsewhere.iterdir()) == []  # no outputs/<date>/<time>/ holding only eval.log
    assert "test/parzen_ll" in json.loads(checkpoint.with_suffix(".eval.json").read_text())
    assert "Tip" not in result.stdout + result.stderr


def test_gan_eval_that_fails_writes_and_removes_nothing_where_it_runs(tmp_path):
    (tmp_path / "samples").mkdir()  # e.g. started inside a run folder
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    result = run_cli("gan-eval", f"ckpt_path={tmp_path / 'notes.ckpt'}", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.ckpt", "samples"]


def test_an_offline_download_names_its_cause_and_leaves_no_empty_data_folder(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torchvision.datasets import mnist

    from gan.data import MNISTDataModule
    from gan.errors import DataError

    def offline(url, **kwargs):
        raise URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(mnist, "download_and_extract_archive", offline)  # torchvision's real error path, no network
    root = tmp_path / "data"
    with pytest.raises(DataError) as error:
        MNISTDataModule(root=str(root), download=True).prepare_data()
    message = str(error.value)
    assert "the download failed: [Errno -2] Name or service not known, from https://" in message
    assert "and 1 other mirror" in message and "data.root=/path/to/data" in message
    assert not root.exists()  # torchvision made data/MNIST/raw before downloading


def test_cifar10_download_failure_names_its_cause(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torchvision.datasets import cifar

    from gan.data import CIFAR10DataModule
    from gan.errors import DataError

    def offline(url, *args, **kwargs):
        raise URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"the download failed: \[Errno -3\] Temporary failure in name resolution\. Fix"):
        CIFAR10DataModule(root=str(tmp_path / "data"), download=True).prepare_data()
    assert not (tmp_path / "data").exists()


def _hold_in_another_process(folder: Path) -> subprocess.CompletedProcess:
    code = f"from gan.utils.run import _hold_folder; _hold_folder({str(folder)!r}, 'hydra.run.dir')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_lock_refuses_a_second_process_and_its_file_goes_at_exit(tmp_path):
    run_utils._hold_folder(str(tmp_path), "hydra.run.dir")
    handle = run_utils._HELD_FOLDERS.pop()
    try:
        refused = _hold_in_another_process(tmp_path)
        assert refused.returncode == 1 and "another process is running in" in refused.stderr
    finally:
        run_utils._release_folder(handle, tmp_path / ".lock")
    assert not (tmp_path / ".lock").exists()
    taken = _hold_in_another_process(tmp_path)  # free again; and that process removes the file as it exits
    assert taken.returncode == 0, taken.stderr
    assert not (tmp_path / ".lock").exists()


def test_a_lock_taken_on_a_file_its_holder_unlinked_is_taken_again_on_the_file_at_the_path(tmp_path, monkeypatch):
    # A process opened .lock just before its holder unlinked it and exited: flock then succeeds on the unlinked
    # file, which guards nothing (the next process creates and locks a new .lock); the lock must move to it.
    path = tmp_path / ".lock"
    stale = open(path, "a")  # noqa: SIM115
    path.unlink()
    opened = iter([stale])
    monkeypatch.setattr(run_utils, "open", lambda *args: next(opened, None) or open(*args), raising=False)
    run_utils._hold_folder(str(tmp_path), "hydra.run.dir")
    handle = run_utils._HELD_FOLDERS.pop()
    try:
        assert stale.closed and handle is not stale and run_utils._is_file_at(handle, path)
        assert _hold_in_another_process(tmp_path).returncode == 1  # a newcomer finds the folder taken
    finally:
        run_utils._release_folder(handle, path)


class _Trainer(SimpleNamespace):
    sanity_checking = False


def test_the_bar_shows_every_d_statistic_an_objective_logs_and_keeps_the_last_parzen():
    bar = ThrottledRichProgressBar()
    logged = {"train/d_loss": torch.tensor(0.5), "train/g_loss": torch.tensor(2.0), "train/d_real": torch.tensor(0.75),
              "train/d_fake": torch.tensor(0.25), "train/d_gradient_penalty": torch.tensor(0.125),
              "train/lr_g": torch.tensor(0.1), "val/parzen_ll": torch.tensor(123.5), "val/d_real": torch.tensor(0.5)}  # fmt: skip
    bar._read_logged(_Trainer(callback_metrics=logged))
    assert bar.get_metrics(None, None) == {"d_loss": 0.5, "g_loss": 2.0, "D(x)": 0.75, "D(G(z))": 0.25,
                                           "d_gradient_penalty": 0.125, "parzen": 123.5}  # fmt: skip
    # the next epoch, before its validation: the losses move on, the last Parzen estimate stays
    bar._read_logged(_Trainer(callback_metrics={"train/d_loss": torch.tensor(0.25)}))
    assert bar.get_metrics(None, None)["d_loss"] == 0.25 and bar.get_metrics(None, None)["parzen"] == 123.5


def test_the_bar_reads_the_logged_values_only_after_a_batch_that_lightning_logged():
    reads = []

    class Counted(torch.Tensor):
        def item(self):
            reads.append(1)
            return super().item()

    bar = ThrottledRichProgressBar()
    for logs in (False, True, False, False):
        trainer = _Trainer(callback_metrics={"train/d_loss": torch.tensor(0.5).as_subclass(Counted)},
                           _logger_connector=SimpleNamespace(should_update_logs=logs))  # fmt: skip
        bar._logged = bool(trainer._logger_connector.should_update_logs)  # what on_train_batch_end records
        bar.on_train_batch_start(trainer, None, None, 1)
    assert len(reads) == 1 and bar.get_metrics(None, None) == {"d_loss": 0.5}


def test_the_run_summary_names_the_folder_metrics_and_outputs(tmp_path):
    (tmp_path / "samples").mkdir()
    for name in ("epoch_0000.png", "epoch_0001.png", "epoch_0002.png"):
        (tmp_path / "samples" / name).write_bytes(b"")
    (tmp_path / "figures").mkdir()
    for name in ("figure2_epoch_0001.png", "figure3_epoch_0001.png", "figure2_epoch_0002.png", "figure3_epoch_0002.png"):
        (tmp_path / "figures" / name).write_bytes(b"")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    metrics = {"test/parzen_ll": 225.04, "test/parzen_se": 2.01, "val/parzen_ll": 230.0, "test/d_real": 0.61,
               "test/d_fake": 0.4, "train/lr_g": 0.1}  # fmt: skip
    lines = run_summary(tmp_path, metrics, epochs=2, experiment="mnist_paper")
    assert lines[0] == f"done, 2 epoch(s) trained: {tmp_path}"
    assert lines[1].startswith("  metrics:     test/parzen_ll 225.0 +- 2.0, val/parzen_ll 230.0, D(x) 0.610, D(G(z)) 0.400")
    assert "lr_g" not in "\n".join(lines)
    assert lines[2] == f"  samples:     {tmp_path / 'samples'}/ (epoch_0000.png: untrained G ... epoch_0002.png)"
    assert lines[3] == f"  figures:     {tmp_path / 'figures'}/ (figure2_epoch_0002.png, figure3_epoch_0002.png)"
    assert lines[4] == f"  checkpoints: {tmp_path / 'checkpoints'}/ (last.ckpt)"
    assert lines[5].startswith("note: samples that all look alike after the first epoch or two are normal")
    assert len(run_summary(tmp_path, metrics, epochs=2, experiment="cifar10_conv")) == 5  # the note is mnist_paper's
    assert len(run_summary(tmp_path, metrics, epochs=50, experiment="mnist_paper")) == 5


def _job(sweep: Path, number: int, overrides: list[str], metrics: dict | None = None, failed: str | None = None) -> None:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if failed is not None:
        (folder / "FAILED").write_text(failed + "\n")


def test_the_sweep_table_lists_each_job_with_its_own_overrides_status_metric_and_folder(tmp_path):
    for number in range(11):  # job 10 sorts after job 9
        _job(tmp_path, number, ["data.root=/d", f"seed={number}"], metrics={"val/parzen_ll": 200.0 + number})
    _job(tmp_path, 11, ["data.root=/d", "seed=11"], failed="ConfigError: model.k=0 is invalid: must be an integer >= 1")
    _job(tmp_path, 12, ["data.root=/d", "seed=12"])
    rows = job_rows(tmp_path, "val/parzen_ll")
    assert [row["job"] for row in rows] == [str(n) for n in range(13)]
    assert rows[10] == {"job": "10", "overrides": "seed=10", "status": "ok", "metric": "210",
                        "folder": str(tmp_path / "10")}  # fmt: skip
    assert rows[11]["status"] == "failed: model.k=0 is invalid: must be an integer >= 1"
    assert rows[11]["metric"] == "-" and rows[12]["status"].startswith("no result")
    lines = table(rows, "val/parzen_ll")
    assert lines[0].split() == ["job", "overrides", "status", "val/parzen_ll", "folder"] and len(lines) == 14


def test_help_starts_with_the_projects_usage_then_lists_the_groups(tmp_path):
    for command, first in (("gan-train", "gan-train: train a GAN"), ("gan-eval", "gan-eval: the full evaluation")):
        result = run_cli(command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith(first) and "Examples:" in lines and len(lines) < 60
        assert any(line.startswith("experiment: ") and "mnist_paper" in line for line in lines)  # Hydra's group list
        assert "_target_" not in result.stdout  # not the whole config
    assert list(tmp_path.iterdir()) == []


def test_the_config_is_printed_only_on_request(caplog):
    assert compose_train([]).extras.print_config is False
    cfg = compose_train(["extras.print_config=true"])
    with caplog.at_level("INFO", logger="gan"):
        run_utils.print_config(cfg)
    assert "task_name: train" in caplog.text
