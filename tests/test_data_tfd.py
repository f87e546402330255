"""TFD: the fold/train_set split logic on a small .mat file of the real layout, and every error case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hydra.utils import instantiate

from gan.config import validate_config
from gan.data import TFDDataModule
from gan.errors import ConfigError, DataError
from tests.helpers import TFD_IMAGES as N
from tests.helpers import compose_train, tfd_arrays, write_tfd

def loaded(root: Path, **kwargs) -> TFDDataModule:
    dm = TFDDataModule(root=str(root), **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def tfd_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tfd")
    write_tfd(root / "TFD")
    return root


def test_paper_default_is_fold0_unlabeled_with_pixels_over_255(tfd_root):
    arrays = tfd_arrays()
    dm = loaded(tfd_root)
    train, val, test = (dm.images(s) for s in ("train", "val", "test"))
    assert train.shape == (20, 1, 48, 48) and val.shape == (5, 1, 48, 48) and test.shape == (3, 1, 48, 48)
    assert train.dtype == torch.float32
    # exactly the unlabeled rows, in file order, /255
    expected = torch.from_numpy(arrays["images"][: N // 2]).float().unsqueeze(1) / 255
    torch.testing.assert_close(train, expected, rtol=0, atol=0)
    assert train.min().item() == 0.0 and train.max().item() == 1.0
    val_rows = np.flatnonzero(arrays["folds"][:, 0] == 2)
    torch.testing.assert_close(val, torch.from_numpy(arrays["images"][val_rows]).float().unsqueeze(1) / 255)


@pytest.mark.parametrize("fold", range(5))
@pytest.mark.parametrize(("train_set", "n_train"), [("unlabeled", 20), ("train", 12), ("both", 32)])
def test_split_sizes_per_fold_and_train_set(tfd_root, fold, train_set, n_train):
    dm = loaded(tfd_root, fold=fold, train_set=train_set)
    assert {s: len(dm.images(s)) for s in ("train", "val", "test")} == {"train": n_train, "val": 5, "test": 3}


def test_folds_pick_different_labelled_rows(tfd_root):
    tests = [loaded(tfd_root, fold=f).images("test") for f in (0, 1)]
    assert not torch.equal(tests[0], tests[1])
    train0, val0, test0 = (loaded(tfd_root, fold=0, train_set="train").images(s) for s in ("train", "val", "test"))
    # train, val and test of one fold are disjoint (images are random, so no two rows coincide)
    flat = torch.cat([train0, val0, test0]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == len(flat)


def test_file_directly_under_root_and_96x96(tmp_path):
    write_tfd(tmp_path, tfd_arrays(resolution=96), resolution=96)
    dm = loaded(tmp_path, resolution=96)
    assert dm.shape == (1, 96, 96) and dm.images("train").shape == (20, 1, 96, 96)


def test_yaml_config_instantiates_and_follows_resolution(tfd_root, tmp_path):
    cfg = compose_train(["data=tfd", f"data.root={tfd_root}", f"paths.output_dir={tmp_path}"])
    validate_config(cfg)
    assert list(cfg.data.shape) == [1, 48, 48] and cfg.data.train_set == "unlabeled" and cfg.data.fold == 0
    dm = instantiate(cfg.data)
    dm.setup()
    assert dm.images("train").shape == (20, 1, 48, 48)
    cfg96 = compose_train(["data=tfd", "data.resolution=96", f"paths.output_dir={tmp_path}"])
    assert list(cfg96.data.shape) == [1, 96, 96] and list(cfg96.model.generator.out_shape) == [1, 96, 96]


def test_missing_file_says_where_it_looked_and_how_to_get_it(tmp_path):
    dm = TFDDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert "TFD_48x48.mat not found in" in message
    assert str((tmp_path / "nowhere" / "TFD").resolve()) in message and str((tmp_path / "nowhere").resolve()) in message
    assert "not publicly downloadable" in message and "data.root" in message


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda a: a.pop("folds"), ["no 'folds' variable"]),
        (lambda a: a.pop("images"), ["no 'images' variable"]),
        (lambda a: a.update(images=a["images"].reshape(N, -1)), ["'images' has shape (40, 2304)", "expected 3-D"]),
        (lambda a: a.update(folds=a["folds"][:, :4]), ["'folds' has shape (40, 4)", "expected (N, 5)"]),
        (lambda a: a.update(folds=a["folds"][:-1]), ["'folds' has 39 rows but 'images' has 40 images"]),
        (lambda a: a.update(images=np.zeros((N, 32, 32), np.uint8)), ["are 32x32 but data.resolution=48"]),
        (lambda a: a.update(images=a["images"].astype(np.float64) * 2), ["expected pixels in [0, 255]"]),
        (lambda a: a.update(folds=np.where(a["folds"] == 3, 1, a["folds"])), ["test split of fold 0 is empty"]),
    ],
    ids=["no-folds", "no-images", "images-2d", "folds-4-cols", "n-mismatch", "wrong-resolution", "range", "empty-test"],
)
def test_bad_file_layout_is_a_one_line_data_error(tmp_path, change, fragments):
    arrays = tfd_arrays()
    change(arrays)
    write_tfd(tmp_path / "TFD", arrays)
    with pytest.raises(DataError) as info:
        loaded(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "Fix:" in message
    for fragment in fragments:
        assert fragment in message, message


def test_unreadable_file_is_a_data_error(tmp_path):
    (tmp_path / "TFD").mkdir()
    (tmp_path / "TFD" / "TFD_48x48.mat").write_bytes(b"not a mat file" * 10)
    with pytest.raises(DataError, match="is unreadable"):
        loaded(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"fold": 7}, "data.fold=7 is invalid: must be one of 0, 1, 2, 3, 4"),
        ({"fold": -1}, "data.fold=-1 is invalid"),
        ({"train_set": "valid"}, "data.train_set='valid' is invalid: must be one of unlabeled, train, both"),
        ({"resolution": 64}, "data.resolution=64 is invalid: must be 48 or 96"),
    ],
)
def test_bad_options_are_config_errors(tfd_root, kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        TFDDataModule(root=str(tfd_root), **kwargs)
    assert fragment in str(info.value)


def test_fold_7_is_rejected_by_the_config_check_too(tmp_path):
    cfg = compose_train(["data=tfd", "data.fold=7", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"data.fold=7 is invalid"):
        validate_config(cfg)
