"""The progress bar takes the trainer's state no faster than it draws, and still ends each epoch complete."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar

from gan.callbacks import ThrottledRichProgressBar
from tests.helpers import RandomImages, cpu_trainer, small_gan


def test_bar_updates_at_most_refresh_rate_times_a_second_and_on_each_epochs_last_batch(monkeypatch):
    updates = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, trainer, module, outputs, batch, batch_idx: updates.append((trainer.current_epoch, batch_idx)))
    clock = iter(range(0, 10_000, 300))  # 0.3 s between batches: every fourth passes at 1 frame a second
    monkeypatch.setattr("gan.callbacks.progress.monotonic", lambda: next(clock) / 1000)
    bar = ThrottledRichProgressBar(refresh_rate=1)
    cpu_trainer(max_epochs=2, callbacks=[bar], enable_progress_bar=True).fit(small_gan("alternating"), RandomImages.make(n_train=80, batch_size=8))
    # 10 batches an epoch, one every 0.3 s: an update once a second has passed since the last, and always on
    # an epoch's last batch (epoch 0: 0.0, 1.2, 2.4 and 2.7 s; epoch 1 counts from 2.7 s)
    assert updates == [(0, 0), (0, 4), (0, 8), (0, 9), (1, 3), (1, 7), (1, 9)]


def test_refresh_rate_zero_is_no_bar():
    bar = ThrottledRichProgressBar(refresh_rate=0)
    cpu_trainer(callbacks=[bar], enable_progress_bar=True).fit(small_gan("alternating"), RandomImages.make(n_train=16, batch_size=8))
    assert bar.is_disabled and bar.progress is None
