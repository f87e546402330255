"""The bad-input catalogue: every case fails fast with one clear line, exit code != 0, and loses nothing.

The bad-input catalogue in docs/reliability.md lists the same cases with their messages.
"""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import run_cli, tiny_data_overrides, write_idx

# (overrides, fragments the error must contain). Hydra itself reports unknown groups, options and keys.
CONFIG_CASES = [
    (["experiment=nope"], ["Could not find 'experiment/nope'", "mnist_paper"]),
    (["model=nope"], ["Could not find 'model/nope'", "paper_mlp"]),
    (["model.kk=2"], ["Could not override 'model.kk'", "not in struct"]),
    (["model.k=0"], ["model.k=0 is invalid", "integer >= 1"]),
    (["model.g_optimizer.lr=-0.1"], ["model.g_optimizer.lr=-0.1 is invalid", "> 0"]),
    (["data.batch_size=0"], ["data.batch_size=0 is invalid", "integer >= 1"]),
    (["model.noise.dim=0"], ["model.noise.dim=0 is invalid", "integer >= 1"]),
    (["model.objective.g_loss=wasserstein"], ["model.objective.g_loss='wasserstein' is invalid", "non_saturating, minimax"]),
    (["model.g_loss=minimax"], ["model.g_loss is now model.objective.g_loss", "Fix: model.objective.g_loss=minimax"]),
    (["model/objective=hinge", "model.objective.r1_gamma=-1"], ["model.objective.r1_gamma=-1 is invalid", ">= 0"]),
    (["model.update_scheme=jacobi"], ["model.update_scheme='jacobi' is invalid", "simultaneous, alternating"]),
    (["model.d_optimizer.momentum=1.5"], ["model.d_optimizer.momentum=1.5 is invalid", "[0, 1)"]),
    (["model.g_scheduler.anneal_epochs=0"], ["model.g_scheduler.anneal_epochs=0 is invalid", "integer >= 1"]),
    (["model.ema_decay=1.5"], ["model.ema_decay=1.5 is invalid", "(0, 1)"]),
    (["data.scaling=zscore"], ["data.scaling='zscore' is invalid", "unit, symmetric, gcn"]),
    (["trainer.devices=0"], ["trainer.devices=0 is invalid"]),
    (["seed=-1"], ["seed=-1 is invalid", "non-negative"]),
    (["seed=null"], ["seed=None is invalid", "a non-negative integer"]),
    (["callbacks.sample_grid.every_n_epochs=0"], ["callbacks.sample_grid.every_n_epochs=0 is invalid",
                                                   "to switch it off: ~callbacks.sample_grid"]),
    (["model.generator.out_shape=[1,32,32]"], ["model.generator.out_shape=[1, 32, 32] does not match data.shape=[1, 28, 28]"]),
    (["data.val_size=0"], ["data.val_size=0 is invalid"]),
    (["model/generator=pytorch_gan"], ["the generator's tanh output lies in [-1, 1] but data.scaling=unit does not",
                                       "add data.scaling=symmetric"]),
    (["experiment=mnist_pytorch_gan", "data.scaling=unit"], ["tanh output lies in [-1, 1] but data.scaling=unit"]),
    (["experiment=mnist_paper", "data.scaling=symmetric"], ["sigmoid output lies in [0, 1] but data.scaling=symmetric",
                                                            "add data.scaling=unit"]),
    (["model.cuda_graph=true", "trainer.precision=bf16-mixed"],
     ["model.cuda_graph=true runs fp32 eager kernels only, not with trainer.precision=bf16-mixed", "Fix:"]),
    (["callbacks.parzen.sigmas=[]"], ["callbacks.parzen.sigmas=[] is invalid", "numbers > 0"]),
    (["data=image_folder"], ["data.path is not set; set it on the command line, e.g. data.path=/path/to/images"]),
    (["data=image_folder", "data.path=images", "data.channels=4"], ["data.channels=4 is invalid", "1 (grey) or 3 (RGB)"]),
    (["data=image_folder", "data.path=images", "data.image_size=32", "model.generator.out_shape=[3,64,64]"],
     ["model.generator.out_shape=[3, 64, 64] does not match data.shape=[3, 32, 32]", "add data.channels=3 data.image_size=64"]),
    (["experiment=cifar10_conv", "data=image_folder", "data.path=images"],  # the paper's conv G makes 32x32 only
     ["makes 32x32 images, but data.shape=[3, 64, 64]", "add data.channels=3 data.image_size=32"]),
    (["callbacks.parzen.test_select_points=0"], ["callbacks.parzen.test_select_points=0 is invalid", "null (the whole validation split) or an integer >= 1"]),
]


def _assert_clean_failure(result, fragments):
    assert result.returncode != 0
    output = result.stderr
    assert "Traceback" not in output, output[-2000:]
    for fragment in fragments:
        assert fragment in output, (fragment, output[-2000:])


@pytest.mark.parametrize(("overrides", "fragments"), CONFIG_CASES, ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_config_fails_in_one_line(overrides, fragments, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("gan-train", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    _assert_clean_failure(result, fragments)
    if any(word in fragments[0] for word in ("is invalid", "does not match", "output lies in")):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert (run_dir / "FAILED").read_text().startswith("ConfigError")
        assert not (run_dir / "checkpoints").exists()


def test_cuda_graph_without_a_gpu_fails_in_one_line(tiny_mnist_root, tmp_path):
    result = run_cli("gan-train", "debug=fast", "model.cuda_graph=true", *tiny_data_overrides(tiny_mnist_root),
                     f"hydra.run.dir={tmp_path / 'run'}")
    _assert_clean_failure(result, ["model.cuda_graph=true needs one CUDA GPU, but this run is on cpu", "Fix: add trainer=gpu"])
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_validation_split_too_small_for_the_parzen_estimate_fails_before_training(tiny_mnist_root, tmp_path):
    # sigma picked on 100 validation images, the estimate on 100 more: a 150-image split cannot hold both
    overrides = [o for o in tiny_data_overrides(tiny_mnist_root) if not o.startswith("data.val_size")]
    result = run_cli("gan-train", "debug=fast", "data.val_size=150", "callbacks.parzen.val_points=100", *overrides,
                     f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    _assert_clean_failure(result, ["the validation split has 150 images, too few for callbacks.parzen.select_points=100 "
                                   "plus val_points=100. Fix: callbacks.parzen.select_points=75 callbacks.parzen.val_points=null"])
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused when fitting starts, not after an epoch
    fixed = run_cli("gan-train", "debug=fast", "data.val_size=150", *overrides, "callbacks.parzen.select_points=75",
                    "callbacks.parzen.val_points=null", "test=false", f"hydra.run.dir={tmp_path / 'fixed'}")  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert (tmp_path / "fixed" / "checkpoints" / "last.ckpt").exists()


def test_a_run_folder_in_use_by_another_process_is_refused_before_anything_is_written(tiny_mnist_root, tmp_path):
    import fcntl

    run_dir = tmp_path / "run"  # e.g. two gan-train started in the same second: the same time-stamped folder
    run_dir.mkdir()
    with open(run_dir / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("gan-train", "debug=fast", *tiny_data_overrides(tiny_mnist_root), f"hydra.run.dir={run_dir}")
    _assert_clean_failure(result, [f"another process is running in {run_dir}", "Fix: pass hydra.run.dir=<another folder>"])
    assert [p.name for p in run_dir.iterdir()] == [".lock"]  # no .hydra/, log, FAILED or checkpoint of its own


def test_missing_data_offline_names_the_folder_and_the_fix(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("gan-train", f"data.root={tmp_path / 'empty'}", "data.download=false", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path)  # fmt: skip
    _assert_clean_failure(result, ["MNIST not found in", "empty/MNIST/raw", "Fix: set data.root"])
    assert result.stderr.strip().splitlines()[-1].startswith("error: MNIST not found")
    # a run that fails before training leaves only its FAILED file, and prints one line
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: MNIST not found"), result.stderr
    assert "/path/to/data" in errors[0]
    assert [p.name for p in run_dir.iterdir()] == ["FAILED"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nor an empty data folder


@pytest.fixture
def corrupt_root(tiny_mnist_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_mnist_root, root)
    return root


def test_truncated_idx_file(corrupt_root, tmp_path):
    images = corrupt_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    result = run_cli("gan-train", "debug=fast", *tiny_data_overrides(corrupt_root), f"hydra.run.dir={tmp_path / 'run'}")
    _assert_clean_failure(result, ["unreadable", "Fix: delete", "MNIST/raw"])


def test_wrong_md5(corrupt_root, tmp_path):
    overrides = [o for o in tiny_data_overrides(corrupt_root) if not o.startswith("data.verify")]
    result = run_cli("gan-train", "debug=fast", *overrides, "data.verify=true", f"hydra.run.dir={tmp_path / 'run'}")
    _assert_clean_failure(result, ["has md5", "expected 6bbc9ace898e44ae57da46a324031adb", "data.verify=false"])


def test_wrong_image_shape(corrupt_root, tmp_path):
    import numpy as np

    write_idx(corrupt_root / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros((600, 32, 32), np.uint8))
    result = run_cli("gan-train", "debug=fast", *tiny_data_overrides(corrupt_root), f"hydra.run.dir={tmp_path / 'run'}")
    _assert_clean_failure(result, ["shape (1, 32, 32)", "data.shape is [1, 28, 28]"])


def test_batch_larger_than_the_training_split(tiny_mnist_root, tmp_path):
    result = run_cli("gan-train", "debug=fast", *tiny_data_overrides(tiny_mnist_root), "data.batch_size=5000",
                     f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    _assert_clean_failure(result, ["has 400 training images, fewer than one batch of data.batch_size=5000",
                                   "lower data.batch_size"])  # fmt: skip
    assert result.stderr.strip().splitlines()[-1].startswith("error: MNIST has 400 training images")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_every_process_refuses_a_share_smaller_than_one_batch(tiny_mnist_root, num_workers):
    from types import SimpleNamespace

    from gan.data import MNISTDataModule
    from gan.errors import DataError

    data = MNISTDataModule(root=str(tiny_mnist_root), verify=False, download=False, val_size=200, batch_size=250,
                           num_workers=num_workers)  # fmt: skip
    data.setup()
    assert len(data.train_dataloader()) == 1  # one process: 400 images make one batch of 250
    for rank in (0, 1):  # two processes: 200 each, on every rank (none may go on to wait for the other)
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        with pytest.raises(DataError, match="has 400 training images, 200 for each of 2 processes, fewer than one batch"):
            data.train_dataloader()


def test_checkpoint_that_does_not_exist(tmp_path):
    result = run_cli("gan-train", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}")
    _assert_clean_failure(result, ["nope.ckpt does not exist", "Fix: pass the path of a .ckpt file"])


def test_file_that_is_not_a_checkpoint(tmp_path):
    fake = tmp_path / "notes.ckpt"
    fake.write_text("not a checkpoint")
    for command in ("gan-train", "gan-eval"):
        result = run_cli(command, f"ckpt_path={fake}", f"hydra.run.dir={tmp_path / command}")
        _assert_clean_failure(result, ["notes.ckpt is not a readable checkpoint"])


def test_checkpoint_from_a_different_architecture(fast_run, tiny_mnist_root, tmp_path):
    result = run_cli("gan-train", "debug=fast", "experiment=mnist_pytorch_gan", f"ckpt_path={fast_run}/checkpoints/last.ckpt",
                     f"hydra.run.dir={tmp_path / 'other'}", *tiny_data_overrides(tiny_mnist_root))  # fmt: skip
    _assert_clean_failure(result, ["saved from a different architecture", "same experiment"])


def test_output_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_cli("gan-train", f"hydra.run.dir={blocker / 'run'}")
    _assert_clean_failure(result, ["Not a directory", str(blocker / "run")])


def test_a_users_class_with_a_bad_argument_fails_in_one_line_naming_the_key(tmp_path):
    """The project checks its own keys; a user's `_target_` is built, and a bad argument names its config key."""
    result = run_cli("gan-train", "model/objective=hinge", "+model.objective.margin=2",
                     f"hydra.run.dir={tmp_path / 'run'}", "data.root=/nonexistent", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: model.objective (gan.objectives.Hinge) cannot be built"), result.stderr[-2000:]
    assert "Fix: remove model.objective.margin" in lines[-1]
    missing = run_cli("gan-train", "model.objective._target_=my_lab.objectives.Nope", f"hydra.run.dir={tmp_path / 'b'}",
                      cwd=tmp_path)  # fmt: skip
    assert "model.objective._target_=my_lab.objectives.Nope cannot be imported" in missing.stderr
