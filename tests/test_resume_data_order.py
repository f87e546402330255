"""Exact resume in-process, with and without data-loader worker processes, and a data order that depends on
the seed and epoch alone (not on the device holding the data)."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_an_epoch_end_checkpoint_runs_the_next_epoch_whole_and_matches_an_uninterrupted_run(tmp_path, num_workers):
    """What a requeued job does: last.ckpt was written at an epoch end, so the loader's saved position is the
    end of that epoch; the next epoch must still run from its first batch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tests.helpers import RandomImages, cpu_trainer, small_gan

    def data():
        return RandomImages.make(n_train=64, batch_size=8, num_workers=num_workers)

    torch.manual_seed(0)  # the same initial weights for both runs
    uninterrupted = small_gan(seed=3)
    cpu_trainer(max_epochs=2).fit(uninterrupted, data())
    torch.manual_seed(0)

    first = cpu_trainer(max_epochs=1, enable_checkpointing=True,
                        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    first.fit(small_gan(seed=3), data())
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["gan_counters"]["batches_seen"] == 8
    resumed = small_gan(seed=3)
    cpu_trainer(max_epochs=2).fit(resumed, data(), ckpt_path=tmp_path / "last.ckpt")
    assert resumed.batches_seen == 16 and resumed.steps == {"g": 16, "d": 16}
    for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_in_memory_data_with_worker_processes_resumes_mid_epoch_exactly(tmp_path):
    """data.num_workers > 0: the loader's position and epoch are saved in the checkpoint (a DataLoader seeded once
    per process restarted the epoch, in another order, after a resume)."""
    from lightning import Callback

    from tests.helpers import RandomImages, cpu_trainer, small_gan

    def data():
        return RandomImages.make(n_train=64, batch_size=8, num_workers=2)  # 8 batches an epoch

    class SaveAndStopAt(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if pl_module.batches_seen == 11:  # batch 3 of epoch 1
                trainer.save_checkpoint(tmp_path / "mid.ckpt")
                trainer.should_stop = True

    torch.manual_seed(0)
    uninterrupted = small_gan(seed=3)
    cpu_trainer(max_epochs=2).fit(uninterrupted, data())
    torch.manual_seed(0)
    cpu_trainer(max_epochs=2, callbacks=[SaveAndStopAt()]).fit(small_gan(seed=3), data())
    resumed = small_gan(seed=3)
    cpu_trainer(max_epochs=2).fit(resumed, data(), ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.batches_seen == 16
    for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_data_order_is_drawn_on_the_cpu_whatever_device_holds_the_data(monkeypatch):
    """CUDA's randperm orders differently from the CPU's for the same seed: the order must not depend on the device."""
    from gan.data.loader import EpochPermutation, TensorBatchLoader

    real_randperm, drawn = torch.randperm, []

    def recording_randperm(n, *args, generator=None, device=None, **kwargs):
        drawn.append((generator.device.type, device))
        return real_randperm(n, *args, generator=generator, device=device, **kwargs)

    monkeypatch.setattr(torch, "randperm", recording_randperm)
    order = EpochPermutation(seed=5, shuffle=True)
    order.set_epoch(3)
    on_meta = order.indices(50, torch.device("meta"))  # a device whose own randperm is not the CPU's
    assert on_meta.device.type == "meta" and drawn == [("cpu", None)]
    expected = real_randperm(50, generator=torch.Generator().manual_seed(5 * 1_000_003 + 3))
    assert torch.equal(order.indices(50, "cpu"), expected)
    batches = list(TensorBatchLoader(torch.empty(50, 2, device="meta"), 10, shuffle=True, drop_last=True, seed=5))
    assert len(batches) == 5 and batches[0].device.type == "meta"
