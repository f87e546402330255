"""No host sync inside a training step: the GPU target of the Performance issue, checked on the CPU.

On a GPU, reading a tensor's value on the host (`.item()`, `bool(t)`, `.cpu()`, `.tolist()`, `nonzero`...) waits
for every queued kernel, so one such call per step stalls the pipeline. Two recorders see such reads on any
device, so the CPU can check what the GPU would do: a TorchFunctionMode sees the Python-level calls (`.cpu()`,
`.tolist()`, `.numpy()`, formatting... which never reach ATen on the CPU), and a TorchDispatchMode sees the ATen
ops that read a value back (`_local_scalar_dense`, `nonzero`, ...) wherever they run, inside other calls and
inside autograd hooks too. Each training batch and each gap between two batches (the hooks that run after the
recorder's, Lightning's logging, the next batch's fetch) is recorded separately, through the real configs,
callbacks and logger. Not seen: the callbacks' `on_train_batch_start` hooks that run before the recorder's on
the first batch (on later batches they fall in the gap before).
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict

import pytest
import torch
from hydra.utils import instantiate
from lightning import Callback
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from gan.utils.instantiate import instantiate_callbacks, instantiate_loggers
from tests.helpers import compose_train, tiny_data_overrides, write_tiny_mnist

HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.__format__, torch.Tensor.__array__,
              torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.nonzero, torch.nonzero}  # fmt: skip
ATEN_READS = {"_local_scalar_dense", "nonzero", "masked_select", "unique_dim", "_unique2", "unique_consecutive"}


class _Recorder:
    """Counts host reads in the current window; a read the function-level mode recorded is not counted again
    for the ATen ops it runs."""

    def __init__(self, trainer, calls: Counter) -> None:
        self.trainer, self.calls, self.inside_read = trainer, calls, 0

    def optimizer_step_count(self, args, kwargs) -> bool:
        # PyTorch keeps Adam's step counters on the host (unless capturable or fused): reading them syncs nothing
        tensor = args[0] if args else next(iter((kwargs or {}).values()), None)
        return any(tensor is state.get("step") for opt in self.trainer.optimizers for state in opt.state.values())


class _PythonReads(TorchFunctionMode):
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func not in HOST_READS:
            return func(*args, **(kwargs or {}))
        if not self.recorder.optimizer_step_count(args, kwargs):
            self.recorder.calls[func.__name__] += 1
        self.recorder.inside_read += 1
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.recorder.inside_read -= 1


class _AtenReads(TorchDispatchMode):
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ATEN_READS and not self.recorder.inside_read and not self.recorder.optimizer_step_count(args, kwargs):
            self.recorder.calls[f"aten.{name}"] += 1
        return func(*args, **(kwargs or {}))


class HostReadsPerBatch(Callback):
    """Per-window counts of host reads: "3" is training batch 3 (from this callback's batch-start hook to its
    batch-end hook), "after 3" everything from there to the start of batch 4."""

    def __init__(self) -> None:
        self.windows: dict[str, Counter] = defaultdict(Counter)
        self._modes: list = []

    def open_window(self, trainer, window: str) -> None:
        self.close()
        recorder = _Recorder(trainer, self.windows[window])
        self._modes = [_PythonReads(recorder), _AtenReads(recorder)]
        for mode in self._modes:
            mode.__enter__()

    def close(self) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(None, None, None)
        self._modes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.open_window(trainer, str(batch_idx))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.open_window(trainer, f"after {batch_idx}")


class CloseAtEpochEnd(Callback):
    """Put first among the callbacks: ends the last gap before any epoch-end work (figures, checkpoints,
    which read their results back, as they should)."""

    def __init__(self, recorder: HostReadsPerBatch) -> None:
        self.recorder = recorder

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.recorder.close()


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist"), n_train=1400)  # 1,200 training images


def _fit_nine_batches(overrides: list[str], mnist_root, tmp_path, recorder) -> None:
    """Nine training batches through the real configs, callbacks and logger, `recorder` watching every window.
    Logging every 4 batches and the divergence check every 3 are the positive controls: the recorders must
    see them, where the defaults (50 and 50) would put them outside these 9 batches."""
    cfg = compose_train([*overrides, *tiny_data_overrides(mnist_root), f"paths.output_dir={tmp_path}",
                         "trainer.max_epochs=1", "trainer.log_every_n_steps=4",
                         "callbacks.divergence_guard.check_every_n_steps=3"])  # fmt: skip
    callbacks = [CloseAtEpochEnd(recorder), *instantiate_callbacks(cfg.callbacks), recorder]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_loggers(cfg.logger),
                          limit_train_batches=9, limit_val_batches=0)  # fmt: skip
    try:
        trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
    finally:
        recorder.close()  # a failed run must not leave the recorders on for the rest of the session


# The PyTorch-GAN run keeps an EMA of G (whose update is in the step; torch's AveragedModel read its counter
# back twice per update) and covers the alternating scheme, Adam and BatchNorm's buffers.
@pytest.mark.parametrize(("experiment", "ema_decay"), [("mnist_paper", "null"), ("mnist_pytorch_gan", 0.999)])
def test_a_training_step_reads_nothing_back_from_the_device(experiment, ema_decay, mnist_root, tmp_path):
    recorder = HostReadsPerBatch()
    _fit_nine_batches([f"experiment={experiment}", f"model.ema_decay={ema_decay}"], mnist_root, tmp_path, recorder)

    reads = {window: dict(calls) for window, calls in recorder.windows.items() if calls}
    # the divergence guard's one read per check (the 3rd, 6th and 9th batches); Lightning's logging after the
    # 4th and the 8th (its .item() per logged value; the ATen read inside each is not counted twice)
    check = {"cpu": 1, "__bool__": 1}
    assert (reads.pop("2"), reads.pop("5"), reads.pop("8")) == (check, check, check)
    for window in ("after 3", "after 7"):
        logged = reads.pop(window)
        assert set(logged) == {"item"} and logged["item"] >= 4, logged  # losses, D's outputs, optimizer settings
    assert reads == {}, f"host reads inside training batches: {reads}"
    assert len(recorder.windows) == 9 + 9  # every batch and every gap, the last one up to the epoch's end


def test_the_recorders_see_reads_nested_in_other_calls_and_in_autograd_hooks():
    recorder = HostReadsPerBatch()
    trainer = type("NoOptimizers", (), {"optimizers": []})()
    weight = torch.ones(3, requires_grad=True)
    weight.register_hook(lambda grad: grad * float(grad.sum() > 0))  # bool() inside backward
    recorder.open_window(trainer, "nested")
    try:
        loss = (weight * 2).sum()
        f"{loss.detach():.3f}"  # formatting reads the value
        loss.backward()
    finally:
        recorder.close()
    assert recorder.windows["nested"] == {"__format__": 1, "aten._local_scalar_dense": 1}


class CudaSyncsPerBatch(Callback):
    """On a GPU, PyTorch's own sync detector (`torch.cuda.set_sync_debug_mode`) warns at every synchronizing
    call; the warnings are counted per window and calling line, as HostReadsPerBatch counts reads."""

    def __init__(self) -> None:
        self.windows: dict[str, Counter] = defaultdict(Counter)
        self._window, self._catcher, self._caught = None, None, None

    def open_window(self, window: str) -> None:
        self.close()
        self._window, self._catcher = window, warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def close(self) -> None:
        if self._catcher is None:
            return
        torch.cuda.set_sync_debug_mode("default")
        self.windows[self._window].update(f"{w.filename}:{w.lineno}" for w in self._caught if "synchroniz" in str(w.message))
        self._catcher.__exit__(None, None, None)
        self._catcher = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.open_window(str(batch_idx))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.open_window(f"after {batch_idx}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("overrides", [["experiment=mnist_paper", "model.ema_decay=0.9999"],
                                       ["experiment=mnist_pytorch_gan", "model.ema_decay=0.999"],
                                       ["experiment=mnist_paper", "model.ema_decay=0.9999", "model.cuda_graph=true"]],
                         ids=["paper", "pytorch_gan", "paper-cuda_graph"])
def test_on_a_gpu_cuda_sees_no_synchronizing_call_in_a_training_step(overrides, mnist_root, tmp_path):
    # With model.cuda_graph, batches 0-2 warm up eagerly and batch 3 is captured (a sync, once per graph; here
    # also a logging batch); 4-8 are replays.
    detector = CudaSyncsPerBatch()
    _fit_nine_batches([*overrides, "trainer=gpu"], mnist_root, tmp_path, detector)
    syncs = {window: dict(calls) for window, calls in detector.windows.items() if calls}
    # The positive controls: the divergence check (batches 2, 5, 8) and Lightning's logging after 3 and 7.
    assert {"2", "5", "8", "after 3", "after 7"} <= set(syncs), syncs
    # Also allowed: the logging batches themselves (self.log turns Python floats into device tensors, and with
    # model.cuda_graph the learning rates are read back to be logged; batch 3 is also the one captured) and the
    # first batch of a run (torch 2.11 synchronises once inside torch.cuda there). Every other batch and gap,
    # the graph replays included, must not synchronise.
    unexpected = set(syncs) - {"0", "2", "3", "5", "7", "8", "after 3", "after 7"}
    assert not unexpected, f"synchronizing calls in training batches: { {w: syncs[w] for w in unexpected} }"
