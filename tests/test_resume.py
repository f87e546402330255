"""Never lose work: exact resume after SIGKILL, atomic checkpoints, the divergence guard."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli, tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _train(run_dir: Path, root: Path, *extra: str):
    args = [
        "debug=fast", f"hydra.run.dir={run_dir}", *tiny_data_overrides(root), "data.batch_size=20",
        "trainer.max_epochs=2", "trainer.limit_train_batches=1.0", "trainer.deterministic=true", "test=false",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.every_n_epochs=null",
        "callbacks.model_checkpoint.every_n_train_steps=14",  # global_step counts D and G steps: every 7 batches
        "+callbacks.final._target_=tests.fault_injection.SaveFinalWeights", f"+callbacks.final.path={run_dir}/final.pt",
        *extra,
    ]  # fmt: skip
    return run_cli("gan-train", *args, env=ENV, cwd=run_dir.parent)


@pytest.fixture(scope="module")
def uninterrupted(tiny_mnist_root, tmp_path_factory) -> Path:
    """Final weights of the 2-epoch run that the resumed runs must repeat exactly."""
    reference = tmp_path_factory.mktemp("resume") / "uninterrupted"
    assert _train(reference, tiny_mnist_root).returncode == 0
    return reference / "final.pt"


def _assert_same_weights(expected_path: Path, actual_path: Path) -> None:
    expected, actual = torch.load(expected_path), torch.load(actual_path)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_sigkill_mid_epoch_then_auto_resume_gives_bit_identical_weights(tiny_mnist_root, tmp_path, uninterrupted):
    resumed = tmp_path / "killed"
    # 20 batches per epoch; last.ckpt is written after batch 7 and 14; the kill lands mid-epoch at 17.
    killed = _train(resumed, tiny_mnist_root, "+callbacks.kill._target_=tests.fault_injection.KillAtBatch",
                    "+callbacks.kill.batch=17")  # fmt: skip
    assert killed.returncode == -9
    at_kill = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert at_kill["gan_counters"]["batches_seen"] == 14
    again = _train(resumed, tiny_mnist_root, "auto_resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_weights(uninterrupted, resumed / "final.pt")
    final = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["gan_counters"]["batches_seen"] == 35  # the last multiple of 7 batches
    # the training time adds up over the resume (Lightning's Timer, which reproduce_table1.py reports)
    trained = [checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] for checkpoint in (at_kill, final)]
    assert 0 < trained[0] < trained[1]
    # the paper's schedule was restored too: lr decayed once per step over all 35 batches
    lr = final["optimizer_states"][0]["param_groups"][0]["lr"]
    assert abs(lr - 0.1 / 1.000004**35) < 1e-12


def test_a_new_run_refuses_to_overwrite_existing_checkpoints(tiny_mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    assert _train(run_dir, tiny_mnist_root, "trainer.max_epochs=1").returncode == 0
    before = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    again = _train(run_dir, tiny_mnist_root, "trainer.max_epochs=1")
    assert again.returncode == 1
    assert "already holds checkpoints" in again.stderr and "auto_resume=true" in again.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == before
    # nor from another checkpoint: the folder's progress would be overwritten
    other = tmp_path / "other.ckpt"
    other.write_bytes(before)  # the state after batch 14 of epoch 0
    again = _train(run_dir, tiny_mnist_root, "trainer.max_epochs=2", f"ckpt_path={other}")
    assert again.returncode == 1 and "already holds checkpoints" in again.stderr.strip().splitlines()[-1]
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == before
    # a job requeued after it got further (auto_resume, its original ckpt_path on the command line again) goes on
    # from the folder's own last.ckpt (batch 35), not from the one it was started from (batch 14)
    assert _train(run_dir, tiny_mnist_root, "auto_resume=true").returncode == 0
    further = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    assert further != before
    requeued = _train(run_dir, tiny_mnist_root, f"ckpt_path={other}", "auto_resume=true")
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    output = requeued.stderr + requeued.stdout
    assert f"ckpt_path={other} is not used" in output
    assert f"Restoring states from the checkpoint path at {run_dir / 'checkpoints' / 'last.ckpt'}" in output
    # testing only (train=false) without a checkpoint named is refused like training: it would test an untrained G
    refused = _train(run_dir, tiny_mnist_root, "train=false", "test=true")
    assert refused.returncode == 1 and "already holds checkpoints" in refused.stderr.strip().splitlines()[-1]


def test_a_resume_refuses_another_val_parzen_scoring_and_follows_a_new_lr_anneal(tiny_mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    assert _train(run_dir, tiny_mnist_root, "trainer.max_epochs=1").returncode == 0
    before = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    again = _train(run_dir, tiny_mnist_root, "auto_resume=true", "callbacks.parzen.val_samples=300",
                   "callbacks.parzen.sigmas=[0.2,0.5]")  # fmt: skip
    assert again.returncode == 1 and "Traceback" not in again.stderr
    lines = again.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and lines[-1].endswith(
        "to resume it, add callbacks.parzen.val_samples=200 callbacks.parzen.sigmas=[0.1,0.12915497,0.16681005,"
        "0.21544347,0.27825594,0.35938137,0.46415888,0.59948425,0.77426368,1.0]")
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == before
    # the same Parzen settings resume (here: into a second epoch), appending to the first epoch's log; an lr
    # anneal given on the command line takes effect from the next step, also mid-epoch (last.ckpt is at batch 14
    # of 20, where Lightning resumes without an epoch start): the checkpoint restores where the schedule is,
    # the config its shape
    first_log = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    anneal = [f"model.{net}_scheduler.anneal_{key}" for net in "gd" for key in ("start_epoch=0", "epochs=3")]
    resumed = _train(run_dir, tiny_mnist_root, "auto_resume=true", *anneal)  # factor 0.75 in epoch 0, 0.5 in epoch 1
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    assert log[: len(first_log)] == first_log
    rows = [row for row in csv.DictReader(log) if row.get("train/lr_g")]
    steps = [int(row["step"]) for row in rows]
    restart = next(i for i in range(1, len(rows)) if steps[i] < steps[i - 1])  # the log goes on where it resumed
    assert steps[restart] == 14 and {row["epoch"] for row in rows[restart:]} == {"0", "1"}
    for i, row in enumerate(rows):
        factor = float(row["train/lr_g"]) * 1.000004 ** (steps[i] + 1) / 0.1  # less the paper's per-step decay
        expected = 1.0 if i < restart else 0.75 if row["epoch"] == "0" else 0.5
        assert abs(factor - expected) < 1e-5, (row, factor, expected)
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert abs(final["optimizer_states"][1]["param_groups"][0]["lr"] - 0.1 / 1.000004**35 * 0.5) < 1e-12


def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(tiny_mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    result = _train(run_dir, tiny_mnist_root, "+callbacks.poison._target_=tests.fault_injection.PoisonLossAtBatch",
                    "+callbacks.poison.batch=10")  # fmt: skip
    assert result.returncode == 1
    assert "non-finite D or G loss at training batch 9" in result.stderr
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["gan_counters"]["batches_seen"] == 7
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert (run_dir / "FAILED").read_text().startswith("DivergenceError")


def test_last_checkpoint_follows_every_epoch_when_the_monitored_metric_stops_improving(tmp_path):
    from lightning import Callback
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gan.callbacks import LastAndBestCheckpoint
    from tests.helpers import RandomImages, cpu_trainer, small_gan

    class WorseEveryEpoch(Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            pl_module.log("val/score", float(-trainer.current_epoch))

    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, filename="epoch_{epoch:04d}", auto_insert_metric_name=False,
                                       monitor="val/score", mode="max", save_top_k=1, save_last=True,
                                       enable_version_counter=False)  # fmt: skip
    trainer = cpu_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, enable_checkpointing=True,
                          callbacks=[WorseEveryEpoch(), checkpoint])  # fmt: skip
    trainer.fit(small_gan(), RandomImages.make(n_train=16, batch_size=8))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["epoch_0001.ckpt", "last.ckpt"]  # best: the first epoch
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["gan_counters"]["batches_seen"] == 6
    # the cached state key is the one Lightning derives, so its state is found again on resume
    assert checkpoint.state_key == ModelCheckpoint.state_key.fget(checkpoint) and checkpoint.state_key in last["callbacks"]


def test_divergence_guard_names_the_first_bad_batch_at_its_next_check():
    from types import SimpleNamespace

    import pytest

    from gan.callbacks import DivergenceGuard
    from gan.errors import DivergenceError

    guard = DivergenceGuard(check_every_n_steps=4)
    module = SimpleNamespace(batches_seen=0, current_epoch=0)
    for batches_seen in range(1, 9):  # training batches 0..7; NaN D loss at batches 5 and 6
        module.batches_seen = batches_seen
        d_loss = torch.tensor(float("nan") if batches_seen in (6, 7) else 0.5)
        outputs = {"d_loss": d_loss, "g_loss": torch.tensor(0.7), "d_real": torch.tensor(float("nan"))}
        if batches_seen < 8:
            guard.on_train_batch_end(None, module, outputs, None, 0)  # batch 3's check passes; d_real is no loss
        else:
            with pytest.raises(DivergenceError, match="non-finite D or G loss at training batch 5 "):
                guard.on_train_batch_end(None, module, outputs, None, 0)


def test_divergence_guard_stops_every_ddp_rank_when_one_ranks_loss_is_not_finite():
    from types import SimpleNamespace

    import pytest

    from gan.callbacks import DivergenceGuard
    from gan.errors import DivergenceError

    decisions = []

    def all_ranks_agree(local_ok, all):  # this rank's losses are finite, another rank's are not
        decisions.append((local_ok, all))
        return False

    strategy = SimpleNamespace(reduce_boolean_decision=all_ranks_agree)
    module = SimpleNamespace(batches_seen=2, current_epoch=1, _trainer=SimpleNamespace(strategy=strategy))
    guard = DivergenceGuard(check_every_n_steps=2)
    with pytest.raises(DivergenceError, match="non-finite D or G loss at another process's batch"):
        guard.on_train_batch_end(None, module, {"d_loss": torch.tensor(0.5)}, None, 0)
    assert decisions == [(True, True)]


def test_divergence_guard_saves_a_checkpoint_with_no_collective_and_checks_the_losses_at_the_next_check():
    """A checkpoint saved on one rank only (the others never join) must not wait in an all-reduce."""
    from types import SimpleNamespace

    import pytest

    from gan.callbacks import DivergenceGuard
    from gan.errors import DivergenceError

    def collective(*args, **kwargs):
        raise AssertionError("a collective while saving: a checkpoint saved on one rank would hang")

    saving = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=collective, reduce=collective,
                                                      broadcast=collective, barrier=collective))  # fmt: skip
    module = torch.nn.Linear(2, 1)
    module.batches_seen, module.current_epoch, module._trainer = 3, 0, saving
    guard = DivergenceGuard(check_every_n_steps=50)
    guard.on_train_batch_end(saving, module, {"d_loss": torch.tensor(float("nan"))}, None, 0)  # batch 2: unchecked
    guard.on_save_checkpoint(saving, module, {})  # finite weights: what goes into the file is good
    with torch.no_grad():
        module.weight[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="non-finite D or G loss at training batch 2 "):  # the cause, named
        guard.on_save_checkpoint(saving, module, {})
    with pytest.raises(DivergenceError, match="non-finite weights in weight"):  # no bad loss pending here
        DivergenceGuard().on_save_checkpoint(saving, module, {})
    with torch.no_grad():
        module.weight[0, 0] = 0.0
    # The loss kept for the next periodic check, which all ranks run together, still stops the run.
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda ok, all: ok))
    with pytest.raises(DivergenceError, match="non-finite D or G loss at training batch 2 "):
        guard.on_validation_start(SimpleNamespace(state=SimpleNamespace(fn="fit"), sanity_checking=False), module)


def test_divergence_guard_checks_the_weights_before_validation_when_an_epoch_ends_between_checks():
    from types import SimpleNamespace

    import pytest

    from gan.callbacks import DivergenceGuard
    from gan.errors import DivergenceError

    module = torch.nn.Linear(2, 1)
    module.batches_seen, module.current_epoch = 30, 0  # 30 batches: the every-50 check has not run yet
    fitting = SimpleNamespace(state=SimpleNamespace(fn="fit"), sanity_checking=False)
    guard = DivergenceGuard(check_every_n_steps=50)
    guard.on_validation_start(fitting, module)  # finite weights: validation goes ahead
    with torch.no_grad():
        module.weight[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="non-finite weights in weight .* after training batch 29"):
        guard.on_validation_start(fitting, module)
    guard.on_validation_start(SimpleNamespace(state=SimpleNamespace(fn="validate"), sanity_checking=False), module)


def test_parzen_callback_reports_non_finite_samples_as_divergence_not_a_traceback():
    from types import SimpleNamespace

    import pytest

    from gan.callbacks import ParzenLogLikelihood
    from gan.errors import DivergenceError

    broken_g = SimpleNamespace(current_epoch=3, noise=lambda n, generator=None: torch.zeros(n, 2),
                               sample=lambda n, noise=None: torch.full((n, 4), float("nan")))
    trainer = SimpleNamespace(world_size=1, global_rank=0, datamodule=SimpleNamespace(scaling="gcn"))
    points = torch.rand(5, 4)
    with pytest.raises(DivergenceError, match=r"non-finite samples \(epoch 4\).*Fix: lower the learning rates"):
        ParzenLogLikelihood(sample_batch_size=8)._score(trainer, broken_g, 8, points, points)


def test_checkpoint_write_failure_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    import errno

    import pytest

    from gan.errors import CheckpointError
    from gan.utils.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    umask = os.umask(0o027)
    try:
        io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o640  # the umask's mode, as open() gives (not mkstemp's 0600)
    before = target.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is intact"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left behind
