"""No host sync inside a training step: the GPU target of the Performance issue, checked on the CPU.

On a GPU, reading a tensor's value on the host (`.item()`, `bool(t)`, `.cpu()`, `.tolist()`, `nonzero`...) waits
for every queued kernel, so one such call per step stalls the pipeline. A TorchFunctionMode sees every such
call on any device, so the CPU can check what the GPU would do: each training batch (the step and every
callback's per-batch hooks) and each gap between two batches (Lightning's logging, the next batch's fetch)
is recorded separately, through the real configs, callbacks and logger.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import torch
from hydra.utils import instantiate
from lightning import Callback
from torch.overrides import TorchFunctionMode

from gan.utils.instantiate import instantiate_callbacks, instantiate_loggers
from tests.helpers import compose_train, tiny_data_overrides, write_tiny_mnist

HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.cpu, torch.Tensor.numpy,
              torch.Tensor.nonzero, torch.nonzero}  # fmt: skip


class _RecordHostReads(TorchFunctionMode):
    def __init__(self, calls: Counter, trainer) -> None:
        super().__init__()
        self.calls, self.trainer = calls, trainer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS and not self._optimizer_step_count(args[0]):
            self.calls[func.__name__] += 1
        return func(*args, **(kwargs or {}))

    def _optimizer_step_count(self, tensor) -> bool:
        # PyTorch keeps Adam's step counters on the host (unless capturable or fused): reading them syncs nothing
        return any(tensor is state.get("step") for opt in self.trainer.optimizers for state in opt.state.values())


class HostReadsPerBatch(Callback):
    """Per-window counts of host reads: "3" is training batch 3, "after 3" the gap before batch 4.
    It must be the last callback, so that its batch-end hook closes the window after all the others'."""

    def __init__(self) -> None:
        self.windows: dict[str, Counter] = defaultdict(Counter)
        self._mode = None

    def _open(self, trainer, window: str) -> None:
        self._close()
        self._mode = _RecordHostReads(self.windows[window], trainer)
        self._mode.__enter__()

    def _close(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._open(trainer, str(batch_idx))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._close()
        if batch_idx + 1 < trainer.num_training_batches:  # after the last batch comes the epoch's end
            self._open(trainer, f"after {batch_idx}")


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist"), n_train=1400)  # 1,200 training images


@pytest.mark.parametrize("experiment", ["mnist_paper", "mnist_pytorch_gan"])
def test_a_training_step_reads_nothing_back_from_the_device(experiment, mnist_root, tmp_path):
    # Logging every 4 batches and the divergence check every 3 are the positive controls: the recorder must
    # see them, where the defaults (50 and 50) would put them outside these 8 batches.
    cfg = compose_train([f"experiment={experiment}", *tiny_data_overrides(mnist_root), f"paths.output_dir={tmp_path}",
                         "trainer.max_epochs=1", "trainer.log_every_n_steps=4",
                         "callbacks.divergence_guard.check_every_n_steps=3"])  # fmt: skip
    recorder = HostReadsPerBatch()
    callbacks = [*instantiate_callbacks(cfg.callbacks), recorder]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_loggers(cfg.logger),
                          limit_train_batches=8, limit_val_batches=0)  # fmt: skip
    trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))

    reads = {window: dict(calls) for window, calls in recorder.windows.items() if calls}
    # the divergence guard's one read per check (the 3rd and 6th batches), Lightning's logging after the 4th
    assert reads.pop("2") == {"cpu": 1, "__bool__": 1}
    assert reads.pop("5") == {"cpu": 1, "__bool__": 1}
    logged = reads.pop("after 3")
    assert set(logged) == {"item"} and logged["item"] >= 4  # losses, D's outputs, the optimizer settings
    assert reads == {}, f"host reads inside training batches: {reads}"
    assert len(recorder.windows) == 8 + 7  # every batch and every gap was recorded
