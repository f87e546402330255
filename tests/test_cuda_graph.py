"""model.cuda_graph: the captured GAN step trains exactly as the eager one.

On a GPU the eager reference uses the same fused optimizers the graph needs, so the two runs differ only in
how the kernels are launched: same noise and dropout (reseeded every step), same schedule, same step counts.
Without a GPU only the host-side parts run: how learning rates reach a graph, what makes it capture again,
what a checkpoint keeps and what a resumed run's optimizers are. The GPU tests passed on an H200 (PyTorch 2.11).
"""

from __future__ import annotations

import functools

import pytest
import torch
from hydra.utils import instantiate
from lightning import Callback, seed_everything

from gan.cuda_graph import GraphedUpdate
from gan.schedules import PaperSchedule
from tests.helpers import compose_train, small_gan, tiny_data_overrides, write_tiny_mnist

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FUSED = ["+model.g_optimizer.fused=true", "+model.d_optimizer.fused=true"]


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist"), n_train=1400)  # 1,200 training images


def _fit(overrides: list[str], root, tmp_path, epochs: int, batches: int):
    cfg = compose_train(["trainer=gpu", *tiny_data_overrides(root), f"paths.output_dir={tmp_path}", "callbacks=none",
                         f"trainer.max_epochs={epochs}", *overrides])  # fmt: skip
    seed_everything(cfg.seed)
    model, data = instantiate(cfg.model), instantiate(cfg.data)
    trainer = instantiate(cfg.trainer, limit_train_batches=batches, limit_val_batches=0, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return trainer, model


@needs_gpu
@pytest.mark.parametrize("overrides", [["experiment=mnist_paper", "model.ema_decay=0.99"],
                                       ["experiment=mnist_pytorch_gan", "model.k=2", "model.ema_decay=0.99"]],
                         ids=["paper-simultaneous-sgd", "pytorch_gan-alternating-k2-adam"])
def test_graphed_training_matches_eager_training(overrides, mnist_root, tmp_path):
    eager_trainer, eager = _fit([*overrides, *FUSED], mnist_root, tmp_path / "eager", epochs=2, batches=10)
    graph_trainer, graphed = _fit([*overrides, "model.cuda_graph=true"], mnist_root, tmp_path / "graph", epochs=2, batches=10)

    assert graphed.graphed_update.captures >= 1  # replays happened: warmup is 3 steps of each kind of batch
    assert graph_trainer.global_step == eager_trainer.global_step and graphed.steps == eager.steps
    for a, b in zip(graphed.trainer.optimizers, eager.trainer.optimizers):
        assert float(a.param_groups[0]["lr"]) == pytest.approx(float(b.param_groups[0]["lr"]), rel=1e-6)
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(graphed.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


@needs_gpu
def test_the_paper_momentum_schedule_captures_once_an_epoch_and_checkpoints_hold_numbers(mnist_root, tmp_path):
    trainer, model = _fit(["experiment=mnist_paper", "model.cuda_graph=true"], mnist_root, tmp_path, epochs=3, batches=6)
    assert model.graphed_update.captures == 3  # momentum rises every epoch: a new graph each epoch
    assert len(model.graphed_update.graphs) == 1  # the old ones are freed
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    lrs = [group["lr"] for state in checkpoint["optimizer_states"] for group in state["param_groups"]]
    assert all(isinstance(lr, float) for lr in lrs), lrs


def test_schedulers_reach_the_graph_through_learning_rate_tensors_and_momentum_changes_recapture():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.5)
    schedule = PaperSchedule(optimizer, decay_factor=2.0, momentum_start=0.5, momentum_end=0.7, saturate_epoch=3)
    graphed = GraphedUpdate(update=None, optimizers=lambda: [optimizer], count_step=None)
    graphed._refresh_learning_rates(torch.device("cpu"))
    lr, key = optimizer.param_groups[0]["lr"], graphed._baked_hyperparameters()
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(0.1)

    weight.grad = torch.ones(3)
    optimizer.step()
    schedule.step()  # torch's schedulers fill a tensor learning rate in place
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    assert graphed._baked_hyperparameters() == key  # a new learning rate needs no new graph

    schedule.set_epoch(1)  # writes a float learning rate and a higher momentum
    graphed._refresh_learning_rates(torch.device("cpu"))
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    assert graphed._baked_hyperparameters() != key


def test_checkpoints_keep_plain_learning_rates_whatever_the_optimizers_hold():
    model = small_gan()
    checkpoint = {"optimizer_states": [{"param_groups": [{"lr": torch.tensor(0.25), "momentum": 0.5, "params": [0]}]}],
                  "lr_schedulers": [{"_last_lr": [torch.tensor(0.25)], "last_epoch": 3}]}  # fmt: skip
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["optimizer_states"][0]["param_groups"][0] == {"lr": 0.25, "momentum": 0.5, "params": [0]}
    assert checkpoint["lr_schedulers"][0]["_last_lr"] == [0.25]


def test_a_resumed_run_keeps_the_optimizer_implementation_it_asks_for(tmp_path):
    """Loading optimizer state replaces the param groups with the saved ones, flags included; switching
    model.cuda_graph on resume must still give fused optimizers (and eager ones when switched off)."""
    from tests.helpers import RandomImages, cpu_trainer

    class RecordFlags(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            self.flags = [(group["foreach"], group["fused"]) for opt in trainer.optimizers for group in opt.param_groups]

    first = small_gan()
    first.g_optimizer = first.d_optimizer = functools.partial(torch.optim.SGD, lr=0.05, foreach=True)
    cpu_trainer(limit_train_batches=2).fit(first, RandomImages.make(n_train=64, batch_size=8))
    path = tmp_path / "foreach.ckpt"
    first.trainer.save_checkpoint(path)

    resumed, recorder = small_gan(), RecordFlags()  # the default implementation (foreach=None)
    cpu_trainer(limit_train_batches=3, max_epochs=2, callbacks=[recorder]).fit(
        resumed, RandomImages.make(n_train=64, batch_size=8), ckpt_path=path)
    assert recorder.flags == [(None, None), (None, None)]

    graphed = small_gan(cuda_graph=True)  # what model.cuda_graph asks of a checkpoint's groups
    checkpoint = torch.load(path, weights_only=False)
    graphed.on_load_checkpoint(checkpoint)
    assert {(g["fused"], g["foreach"]) for s in checkpoint["optimizer_states"] for g in s["param_groups"]} == {(True, None)}


def test_graph_capture_refuses_optimizers_without_a_fused_cuda_step():
    from gan.errors import ConfigError
    from tests.helpers import RandomImages, cpu_trainer

    model = small_gan(cuda_graph=True)
    model.g_optimizer = functools.partial(torch.optim.Adagrad, lr=0.01)  # its fused step runs on the CPU only
    with pytest.raises(ConfigError, match=r"model.g_optimizer has none. Fix: pick one of those"):
        cpu_trainer(limit_train_batches=1).fit(model, RandomImages.make(n_train=16, batch_size=8))
