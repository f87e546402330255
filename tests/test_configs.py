"""Every experiment config composes through Hydra and instantiates data, model and trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from lightning import LightningDataModule, LightningModule, Trainer

from gan.config import validate_config
from gan.utils.instantiate import instantiate_callbacks, instantiate_loggers
from tests.helpers import compose_train, tiny_data_overrides

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_default_experiment_is_the_papers_mnist_gan():
    cfg = compose_train(["paths.output_dir=/tmp/x"])
    assert cfg.model.update_scheme == "simultaneous" and cfg.model.objective.g_loss == "non_saturating"
    assert cfg.data.batch_size == 100 and cfg.model.noise.distribution == "uniform"
    assert cfg.model.g_optimizer.lr == 0.1 and cfg.model.g_scheduler.saturate_epoch == 250
    assert list(cfg.model.generator.hidden_sizes) == [1200, 1200]
    assert list(cfg.model.discriminator.hidden_units) == [240, 240] and cfg.model.discriminator.pieces == 5


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", f"paths.output_dir={tmp_path}", "debug=fast"])
    validate_config(cfg)
    assert isinstance(instantiate(cfg.data), LightningDataModule)
    model = instantiate(cfg.model)
    assert isinstance(model, LightningModule)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_callbacks(cfg.callbacks), logger=instantiate_loggers(cfg.logger))
    assert isinstance(trainer, Trainer)


def test_command_line_overrides_reach_every_group(tmp_path):
    cfg = compose_train(["model.k=2", "model.update_scheme=alternating", "data.batch_size=64",
                         "trainer.max_epochs=5", "seed=3", f"paths.output_dir={tmp_path}"])  # fmt: skip
    assert (cfg.model.k, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.seed) == (2, 64, 5, 3)
    assert cfg.data.seed == 3 and cfg.model.seed == 3  # interpolated from the top-level seed


def test_trainer_max_time_still_limits_a_run_with_the_default_timer(tmp_path):
    """Lightning ignores trainer.max_time when the callbacks already hold a Timer, so the default timer (which
    keeps the training time for reproduce_table1.py) must carry the limit itself."""
    from lightning.pytorch.callbacks import Timer

    for overrides, seconds in (([], None), (["+trainer.max_time=00:01:30:00"], 5400.0)):
        cfg = compose_train([f"paths.output_dir={tmp_path}", *overrides])
        trainer = instantiate(cfg.trainer, callbacks=instantiate_callbacks(cfg.callbacks), logger=False)
        timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
        assert len(timers) == 1 and timers[0]._duration == seconds


def test_networks_follow_the_data_shape(tiny_mnist_root, tmp_path):
    cfg = compose_train(["data=fashion_mnist", f"paths.output_dir={tmp_path}", *tiny_data_overrides(tiny_mnist_root)])
    model = instantiate(cfg.model)
    assert model.generator.out_shape == (1, 28, 28)
    assert cfg.data._target_.endswith("FashionMNISTDataModule")


def test_validation_checks_the_projects_classes_and_leaves_a_users_arguments_to_the_user():
    import pytest
    from omegaconf import open_dict

    from gan.config import validate_config
    from gan.errors import ConfigError

    cfg = compose_train(["paths.output_dir=/tmp/x", "data.scaling=zscore"])
    with pytest.raises(ConfigError, match="data.scaling='zscore' is invalid"):
        validate_config(cfg)
    with open_dict(cfg):
        cfg.data._target_ = "my_lab.data.ZScoredImages"  # a user's datamodule may define its own scalings
    validate_config(cfg)
