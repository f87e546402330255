"""gan-eval: the protocol a checkpoint was trained with, and a result that a failed save cannot lose."""

from __future__ import annotations

import json

import pytest

from gan.errors import CheckpointError
from gan.eval import config_for_checkpoint, report
from tests.helpers import compose_train


def _stored_run(experiment: str, seed: int = 7) -> dict:
    from omegaconf import OmegaConf

    from gan.callbacks.run_config import StoreRunConfig

    run = compose_train([f"experiment={experiment}", f"seed={seed}"])
    # What StoreRunConfig keeps, for the parts gan-eval reads (the rest needs a running Hydra to resolve).
    stored = {key: OmegaConf.to_container(run[key], resolve=True) for key in ("model", "data")}
    stored["seed"] = run.seed
    stored["callbacks"] = {"parzen": OmegaConf.to_container(run.callbacks.parzen, resolve=True)}
    return {StoreRunConfig.KEY: stored}


def test_tfd_checkpoint_is_scored_with_sigma_picked_on_the_whole_validation_split():
    eval_cfg = compose_train(["ckpt_path=x.ckpt", "data.root=/here"], config_name="eval")
    assert eval_cfg.callbacks.parzen.test_select_points == 1000  # gan-eval's default is MNIST's protocol
    cfg = config_for_checkpoint(eval_cfg, _stored_run("tfd_paper"), ["ckpt_path=x.ckpt", "data.root=/here"])
    assert cfg.callbacks.parzen.test_select_points is None  # TFD: the whole validation split
    assert cfg.data.fold == 0 and cfg.data.root == "/here"  # the run's data, the local root
    assert cfg.callbacks.parzen.seed == 7  # the run's seed: its own samples


def test_toy_checkpoint_keeps_its_own_number_of_test_samples_and_gets_no_data_root():
    eval_cfg = compose_train(["ckpt_path=x.ckpt"], config_name="eval")
    cfg = config_for_checkpoint(eval_cfg, _stored_run("toy_1d"))
    assert cfg.callbacks.parzen.test_samples == 2000 != eval_cfg.callbacks.parzen.test_samples
    assert "root" not in cfg.data  # generated data: Toy1DDataModule takes no root


def test_result_is_printed_before_a_save_that_fails(tmp_path, capsys):
    results = {"test/parzen_ll": 123.4, "generator": "raw"}
    out = tmp_path / "gone" / "last.eval.json"  # its folder does not exist: the save fails
    with pytest.raises(CheckpointError, match="could not save .*last.eval.json.*printed above"):
        report(results, out)
    assert json.loads(capsys.readouterr().out.strip()) == results
    assert not out.parent.exists()

    import os

    umask = os.umask(0o027)
    try:
        report(results, tmp_path / "last.eval.json")
    finally:
        os.umask(umask)
    assert json.loads((tmp_path / "last.eval.json").read_text()) == results
    assert (tmp_path / "last.eval.json").stat().st_mode & 0o777 == 0o640  # the umask's mode, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["last.eval.json"]  # no temporary file left behind


def test_single_model_and_data_keys_given_on_the_command_line_win_over_the_checkpoints():
    overrides = ["ckpt_path=x.ckpt", "data.root=/here", "data.eval_batch_size=50", "data.device_resident=false",
                 "model.generator.hidden_sizes=[64,64]"]  # fmt: skip
    eval_cfg = compose_train(overrides, config_name="eval")
    cfg = config_for_checkpoint(eval_cfg, _stored_run("tfd_paper"), overrides)
    assert cfg.data.eval_batch_size == 50 and cfg.data.device_resident is False and cfg.data.root == "/here"
    assert list(cfg.model.generator.hidden_sizes) == [64, 64]
    assert cfg.data.fold == 0 and cfg.model.generator.max_col_norm == 1.9365  # the rest is the checkpoint's
    untouched = config_for_checkpoint(eval_cfg, _stored_run("tfd_paper"), ["ckpt_path=x.ckpt"])
    assert untouched.data.eval_batch_size == 1000 and list(untouched.model.generator.hidden_sizes) == [8000, 8000]


def test_gan_eval_samples_with_the_checkpoints_seed_unless_the_command_line_sets_one():
    run = _stored_run("mnist_paper", seed=7)
    eval_cfg = compose_train(["ckpt_path=x.ckpt", "data.root=/here"], config_name="eval")
    cfg = config_for_checkpoint(eval_cfg, run, ["ckpt_path=x.ckpt", "data.root=/here"])
    assert cfg.seed == 7 and cfg.callbacks.parzen.seed == 7 and cfg.callbacks.quality.seed == 7
    assert eval_cfg.seed == 1234  # the composed config is left as it was
    chosen = compose_train(["ckpt_path=x.ckpt", "seed=3"], config_name="eval")
    assert config_for_checkpoint(chosen, run, ["ckpt_path=x.ckpt", "seed=3"]).callbacks.parzen.seed == 3
    # An explicit experiment replaces the model and data, not whose samples are drawn.
    explicit = ["ckpt_path=x.ckpt", "experiment=mnist_paper"]
    assert config_for_checkpoint(compose_train(explicit, config_name="eval"), run, explicit).callbacks.parzen.seed == 7
    # A checkpoint stored without a seed (a run with seed=null) keeps gan-eval's.
    del run[next(iter(run))]["seed"]
    assert config_for_checkpoint(eval_cfg, run, ["ckpt_path=x.ckpt"]).seed == 1234


def test_gan_eval_names_the_new_key_of_a_moved_one(tmp_path):
    from tests.helpers import run_cli

    result = run_cli("gan-eval", "ckpt_path=x.ckpt", "model.g_loss=minimax", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: model.g_loss is now model.objective.g_loss (the objective is a config group, "
                                     "model/objective=gan2014|hinge|least_squares|wasserstein_gp). Fix: "
                                     "model.objective.g_loss=minimax")  # fmt: skip
