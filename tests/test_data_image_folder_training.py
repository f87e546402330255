"""data=image_folder's streaming training loader (ranks, workers, seeded flips, mid-epoch state) and exact resume
after SIGKILL; two processes' disjoint shares in a real run (slow)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning import Callback

from tests.helpers import image_folder_datamodule, run_cli

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


# --- the training loader -------------------------------------------------------------------------------------
def _batches(loader, epoch: int, limit: int | None = None) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    out = []
    for batch in loader:
        out.append(batch)
        if limit is not None and len(out) == limit:
            break
    return out


def test_training_loader_streams_every_rank_a_disjoint_equal_share_with_pinned_workers(image_folder):
    from torchdata.stateful_dataloader import StatefulDataLoader

    data = image_folder_datamodule(image_folder)
    data.setup()
    shares = []
    for rank in (0, 1):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2, strategy=SimpleNamespace(root_device=torch.device("cuda")))
        loader = data.train_dataloader()
        assert isinstance(loader, StatefulDataLoader) and loader.pin_memory  # pinned for a GPU
        shares.append([index for _, index in loader.sampler])
    n_train = len(data.files["train"])
    assert len(shares[0]) == len(shares[1]) == n_train // 2 and not set(shares[0]) & set(shares[1])
    data.trainer = None
    loader = data.train_dataloader()
    assert not loader.pin_memory and len(loader) == n_train // 20


def test_workers_change_nothing_and_flips_are_seeded_by_image_and_epoch(image_folder):
    one = image_folder_datamodule(image_folder, hflip=True)
    one.setup()
    two = image_folder_datamodule(image_folder, hflip=True, num_workers=2)
    two.setup()
    epoch1 = _batches(one.train_dataloader(), 1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, _batches(two.train_dataloader(), 1), strict=True))
    plain = image_folder_datamodule(image_folder, hflip=False)
    plain.setup()
    unflipped = _batches(plain.train_dataloader(), 1)
    flipped = [(a != b).flatten(1).any(1) for a, b in zip(epoch1, unflipped)]
    share = torch.cat(flipped).float().mean()
    assert 0.3 < share < 0.7  # about half the images flipped ...
    for a, b, f in zip(epoch1, unflipped, flipped):
        assert torch.equal(a[f], b[f].flip(-1)) and torch.equal(a[~f], b[~f])  # ... and flipped is all that differs
    again = _batches(one.train_dataloader(), 1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, again))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_state_mid_epoch_resumes_the_same_batches_in_a_new_process_state(image_folder, num_workers):
    data = image_folder_datamodule(image_folder, hflip=True, num_workers=num_workers)
    data.setup()
    full = _batches(data.train_dataloader(), 2)
    first = data.train_dataloader()
    seen = _batches(first, 2, limit=3)
    state = first.state_dict()
    assert state  # what Lightning writes into the checkpoint
    resumed = data.train_dataloader()  # a fresh loader, epoch never set: as Lightning creates it when resuming
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(seen) + len(rest) == len(full)
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, full, strict=True))


# --- exact resume ----------------------------------------------------------------------------------------------
def _train(run_dir: Path, path: Path, *extra: str):
    args = [
        "debug=fast", "data=image_folder", f"data.path={path}", "data.image_size=16", "data.channels=3",
        "data.num_workers=2", "data.hflip=true", "data.batch_size=20", "data.val_fraction=0.2", "data.test_fraction=0.1",
        f"hydra.run.dir={run_dir}", "trainer.max_epochs=2", "trainer.limit_train_batches=1.0",
        "trainer.deterministic=true", "test=false", "callbacks.parzen.select_points=20",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.every_n_epochs=null",
        "callbacks.model_checkpoint.every_n_train_steps=8",  # global_step counts D and G steps: every 4 batches
        "+callbacks.final._target_=tests.fault_injection.SaveFinalWeights", f"+callbacks.final.path={run_dir}/final.pt",
        *extra,
    ]  # fmt: skip
    return run_cli("gan-train", *args, env=ENV, cwd=run_dir.parent)


# The fast set covers both halves: the loader's mid-epoch state above, SIGKILL + auto_resume in tests/test_resume.py.
@pytest.mark.slow
def test_sigkill_mid_epoch_with_workers_then_auto_resume_gives_bit_identical_weights(image_folder, tmp_path):
    from tests.test_resume import _assert_same_weights

    data = image_folder_datamodule(image_folder)
    data.setup()
    per_epoch = len(data.files["train"]) // 20
    assert 4 * 3 > per_epoch and 14 < 2 * per_epoch  # last.ckpt at batch 12 and the kill at 14 are in epoch 1
    reference = tmp_path / "uninterrupted"
    uninterrupted = _train(reference, image_folder)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    resumed = tmp_path / "killed"
    killed = _train(resumed, image_folder, "+callbacks.kill._target_=tests.fault_injection.KillAtBatch", "+callbacks.kill.batch=14")
    assert killed.returncode == -9
    at_kill = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert at_kill["gan_counters"]["batches_seen"] == 12 and at_kill["epoch"] == 1
    again = _train(resumed, image_folder, "auto_resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_weights(reference / "final.pt", resumed / "final.pt")


class RecordTrainingImages(Callback):
    """For real runs (+callbacks.x._target_=tests.test_data_image_folder_training.RecordTrainingImages): each process
    writes a fingerprint of every training image it was given."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath, self.seen = Path(dirpath), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += [hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() for image in batch]

    def on_train_end(self, trainer, pl_module) -> None:
        (self.dirpath / f"rank{trainer.global_rank}.txt").write_text("\n".join(self.seen))


@pytest.mark.slow
def test_two_processes_train_on_disjoint_shares_of_the_folder(image_folder, tmp_path):
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    result = run_cli("gan-train", "debug=fast", "trainer=ddp_cpu", "data=image_folder", f"data.path={image_folder}",
                     "data.image_size=16", "data.num_workers=1", "data.batch_size=20", "data.val_fraction=0.2",
                     "data.test_fraction=0.1", "callbacks.parzen.select_points=20", "test=false",
                     "trainer.limit_train_batches=1.0", f"hydra.run.dir={run_dir}",
                     "+callbacks.record._target_=tests.test_data_image_folder_training.RecordTrainingImages",
                     f"+callbacks.record.dirpath={run_dir}", env=ENV, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [(run_dir / f"rank{rank}.txt").read_text().splitlines() for rank in (0, 1)]
    data = image_folder_datamodule(image_folder)
    data.setup()
    per_rank = len(data.files["train"]) // 2 // 20 * 20
    assert len(seen[0]) == len(seen[1]) == per_rank and len(set(seen[0])) == per_rank
    assert not set(seen[0]) & set(seen[1])
