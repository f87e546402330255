"""PreemptionCheckpoint without SLURM: on SIGUSR2/SIGTERM, last.ckpt at the next batch end, the previous handler
after it, and a resume that repeats the uninterrupted run exactly (SLURM jobs: tests/test_slurm.py)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning import Callback

from gan.callbacks import PreemptionCheckpoint
from tests.helpers import (
    RandomImages,
    cpu_trainer,
    run_cli,
    small_gan,
    tiny_data_overrides,
)

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HYDRA_FULL_ERROR": "0"}


class SignalDuringBatch(Callback):
    """Send `signum` to this process while training batch `batch` (0-based) runs."""

    def __init__(self, signum: int, batch: int) -> None:
        self.signum, self.batch = signum, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.batches_seen == self.batch:
            os.kill(os.getpid(), self.signum)


def _data():
    return RandomImages.make(n_train=64, batch_size=8)  # 8 batches an epoch


def _same_weights(a, b) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.fixture
def previous_handler(tmp_path):
    """A SIGUSR2 handler installed before training, like submitit's: it notes whether last.ckpt exists, then exits
    (submitit requeues the job there)."""
    calls = []

    def requeue_and_exit(signum, frame):
        calls.append((tmp_path / "last.ckpt").exists())
        raise SystemExit(-1)

    before = signal.signal(signal.SIGUSR2, requeue_and_exit)
    yield calls
    signal.signal(signal.SIGUSR2, before)


def test_sigusr2_saves_at_the_batch_end_then_the_previous_handler_runs_and_the_resume_is_exact(tmp_path,
                                                                                                previous_handler):
    torch.manual_seed(0)
    uninterrupted = small_gan(seed=3)
    cpu_trainer(max_epochs=2).fit(uninterrupted, _data())

    torch.manual_seed(0)
    interrupted = small_gan(seed=3)
    callbacks = [SignalDuringBatch(signal.SIGUSR2, 11), PreemptionCheckpoint(tmp_path)]
    trainer = cpu_trainer(max_epochs=2, callbacks=callbacks)
    with pytest.raises(SystemExit) as stopped:
        trainer.fit(interrupted, _data())
    assert stopped.value.code == -1 and previous_handler == [True]  # called once, after the checkpoint was written
    assert interrupted.batches_seen == 12  # batch 11 finished, batch 12 never started
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert checkpoint["gan_counters"]["batches_seen"] == 12 and checkpoint["epoch"] == 1

    resumed = small_gan(seed=3)
    cpu_trainer(max_epochs=2).fit(resumed, _data(), ckpt_path=tmp_path / "last.ckpt")
    assert resumed.batches_seen == 16
    _same_weights(uninterrupted, resumed)


def test_sigterm_saves_then_lightning_and_the_process_stop(tmp_path):
    model = small_gan()
    callbacks = [SignalDuringBatch(signal.SIGTERM, 2), PreemptionCheckpoint(tmp_path)]
    trainer = cpu_trainer(max_epochs=1, callbacks=callbacks)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        trainer.fit(model, _data())
    assert stopped.value.code == 128 + signal.SIGTERM
    assert trainer.received_sigterm  # Lightning's own SIGTERM handler ran after the checkpoint
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["gan_counters"]["batches_seen"] == 3
    assert signal.getsignal(signal.SIGTERM) == before  # every handler restored


def test_a_signal_during_validation_stops_at_the_end_of_training_without_a_new_checkpoint(tmp_path, previous_handler):

    class SignalInValidation(Callback):
        def on_validation_start(self, trainer, pl_module):
            if trainer.state.fn == "fit":
                os.kill(os.getpid(), signal.SIGUSR2)

    model = small_gan()
    callbacks = [SignalInValidation(), PreemptionCheckpoint(tmp_path)]
    trainer = cpu_trainer(max_epochs=1, limit_val_batches=1, callbacks=callbacks)
    with pytest.raises(SystemExit):
        trainer.fit(model, _data())
    # no batch trained since the signal: nothing more to save (the epoch-end checkpoint, if any, is current)
    assert model.batches_seen == 8 and previous_handler == [False]


def _train(run_dir: Path, root: Path, *extra: str) -> list[str]:
    return ["debug=fast", f"hydra.run.dir={run_dir}",
            *tiny_data_overrides(root), "data.batch_size=20", "trainer.max_epochs=2", "trainer.limit_train_batches=8",
            "trainer.deterministic=true", "trainer.log_every_n_steps=1", "test=false",
            "callbacks.model_checkpoint.monitor=null", *extra]  # fmt: skip


# The fast set covers both halves: SIGUSR2 within one process above, auto_resume in tests/test_resume.py.
@pytest.mark.slow
def test_sigusr2_to_a_local_run_then_auto_resume_gives_the_uninterrupted_weights(tiny_mnist_root, tmp_path):
    env, gan_train = {**os.environ, **ENV}, str(Path(sys.executable).parent / "gan-train")
    reference = subprocess.Popen([gan_train, *_train(tmp_path / "reference", tiny_mnist_root)], env=env, cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run, progress = tmp_path / "run", tmp_path / "progress"
    pace = ["+callbacks.pace._target_=tests.fault_injection.PaceAndReport", f"+callbacks.pace.path={progress}",
            "+callbacks.pace.seconds=0.2"]  # fmt: skip
    interrupted = subprocess.Popen([gan_train, *_train(run, tiny_mnist_root, *pace)], env=env, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (progress.exists() and progress.read_text().strip() and int(progress.read_text()) >= 5):
        assert interrupted.poll() is None and time.monotonic() < deadline, interrupted.communicate()[1][-3000:]
        time.sleep(0.1)
    interrupted.send_signal(signal.SIGUSR2)
    assert interrupted.wait(timeout=300) == 128 + signal.SIGUSR2
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    at_signal = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["gan_counters"]["batches_seen"]
    assert 5 <= at_signal < 16

    resumed = run_cli("gan-train", *_train(run, tiny_mnist_root, "auto_resume=true"), env=ENV, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    actual = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    with open(run / "csv" / "metrics.csv", newline="") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file) if row.get("train/d_loss")]
    assert sorted(set(steps)) == list(range(16)) and len(steps) <= 17  # no step lost, at most one redone


def _agree(rank: int, init_file: str, out: str) -> None:
    from types import SimpleNamespace

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    callback = PreemptionCheckpoint("unused")
    callback._group = callback._agreement_group(SimpleNamespace(world_size=2))
    agreed = [callback._agreed_signal()]  # no signal yet
    callback._received = signal.SIGUSR2 if rank == 0 else 0  # the signal reached one rank only
    agreed.append(callback._agreed_signal())
    Path(f"{out}{rank}").write_text(" ".join(map(str, agreed)))
    torch.distributed.destroy_process_group()


def test_ddp_ranks_agree_on_a_signal_that_reached_one_of_them(tmp_path):
    """Every rank must write the checkpoint (a collective) and stop at the same batch."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # the children need not import torch again
    ranks = [context.Process(target=_agree, args=(rank, str(tmp_path / "init"), str(tmp_path / "rank")))
             for rank in (0, 1)]  # fmt: skip
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)] == [f"0 {int(signal.SIGUSR2)}"] * 2
