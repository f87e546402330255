"""The pinned Lightning range admits only versions with every API the code calls, and the installed one is
in it (a version outside the range would fail at some later call instead of at install time)."""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _requirement(name: str) -> Requirement:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, dependencies) if r.name == name)


def test_lightning_range_starts_at_the_release_with_the_apis_the_code_calls_and_holds_the_installed_one():
    specifier = _requirement("lightning").specifier
    assert Version(version("lightning")) in specifier
    # Trainer.test(weights_only=...) (gan-eval, gan-train's test stage) arrived in 2.6.0; toggled_optimizer in 2.5.2.
    assert not any(Version(v) in specifier for v in ("2.4.0", "2.5.2", "2.5.6"))
    assert Version("2.7.0") not in specifier  # private members below are only known to hold within 2.6


def test_the_lightning_members_the_code_relies_on_exist():
    from lightning import LightningModule, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.core.optimizer import LightningOptimizer
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    assert "weights_only" in inspect.signature(Trainer.test).parameters
    assert "weights_only" in inspect.signature(Trainer.fit).parameters
    assert callable(LightningModule.toggled_optimizer)
    for name in ("_save_last_checkpoint", "_should_save_on_train_epoch_end", "_should_skip_saving_checkpoint",
                 "_monitor_candidates"):  # fmt: skip
        assert callable(getattr(ModelCheckpoint, name)), name  # gan.callbacks.checkpoint.LastAndBestCheckpoint
    assert hasattr(ModelCheckpoint(every_n_epochs=2), "_every_n_epochs")
    import torch

    wrapped = LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert callable(wrapped._on_before_step) and callable(wrapped._on_after_step)  # gan.module (CUDA-graph replays)
    assert callable(ExperimentWriter._check_log_dir_exists)  # gan.loggers.ResumableCSVLogger
    assert "_trainer" in vars(LightningModule())  # gan.callbacks.divergence
    from lightning.pytorch.callbacks import RichProgressBar

    for name in ("_init_progress", "_get_train_description", "_update_metrics"):  # gan.callbacks.progress
        assert callable(getattr(RichProgressBar, name)), name
    bar = RichProgressBar()
    assert hasattr(bar, "_console") and hasattr(bar, "_leave")
    trainer = Trainer(logger=False, enable_checkpointing=False)
    assert hasattr(trainer._logger_connector, "should_update_logs")
    # gan.fused.members: a member's checkpoint is cut out of the fused one; members log at a run alone's step
    assert callable(trainer._checkpoint_connector.dump_checkpoint)
    assert isinstance(trainer.fit_loop.epoch_loop._batches_that_stepped, int)


def test_torch_floor_has_the_apis_the_code_calls():
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    assert Version(torch.__version__.split("+")[0]) in _requirement("torch").specifier
    assert "mmap" in inspect.signature(torch.load).parameters
    assert "multi_avg_fn" in inspect.signature(AveragedModel.__init__).parameters and callable(get_ema_multi_avg_fn)
    assert "fused" in inspect.signature(torch.optim.SGD.__init__).parameters
