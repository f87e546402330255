"""CIFAR-10: the paper's split and gcn scaling on a small dataset in torchvision's on-disk format, and errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torchvision import datasets

from gan.config import validate_config
from gan.data import CIFAR10DataModule
from gan.errors import DataError
from tests.helpers import CIFAR_TEST as N_TEST
from tests.helpers import compose_train, write_tiny_cifar10



@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cifar")
    return root, write_tiny_cifar10(root)


def loaded(root: Path, **kwargs) -> CIFAR10DataModule:
    kwargs = {"verify": False, "download": False, "val_size": 20, **kwargs}
    dm = CIFAR10DataModule(root=str(root), **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_split_is_first_then_last_training_images_and_test_batch(cifar):
    root, rows = cifar
    dm = loaded(root, scaling="unit")
    train, val, test = (dm.images(s) for s in ("train", "val", "test"))
    assert train.shape == (80, 3, 32, 32) and val.shape == (20, 3, 32, 32) and test.shape == (30, 3, 32, 32)
    # channel-first, [0, 1], in file order: row i's value at channel c, pixel (y, x) is data[i, c*1024 + y*32 + x]
    expected = torch.from_numpy(rows["train"]).float().div(255).view(-1, 3, 32, 32)
    torch.testing.assert_close(train, expected[:80], rtol=0, atol=0)
    torch.testing.assert_close(val, expected[80:], rtol=0, atol=0)
    torch.testing.assert_close(test, torch.from_numpy(rows["test"]).float().div(255).view(-1, 3, 32, 32))
    assert round(train[3, 1, 5, 7].item() * 255) == rows["train"][3, 1024 + 5 * 32 + 7]  # G plane, row 5, col 7
    assert 0.0 <= train.min().item() and train.max().item() <= 1.0


def test_default_sizes_are_the_papers_40000_10000():
    dm = CIFAR10DataModule(root="unused", download=False)
    assert dm.val_size == 10000 and dm.scaling == "gcn" and dm.gcn_scale == 55.0 and dm.shape == (3, 32, 32)
    # on the release's 50,000 training images: train[0:40000], valid[40000:50000] (one value per image here)
    train, test = torch.arange(50000.0).view(-1, 1, 1, 1), torch.zeros(10000, 1, 1, 1)
    splits = dm.hold_out_validation(train, test, dm.val_size, "the release")
    assert splits["train"].flatten().tolist() == list(range(40000)) and splits["val"].flatten().tolist() == list(range(40000, 50000))
    assert splits["test"] is test


def test_gcn_gives_each_image_mean_0_and_norm_55(cifar):
    root, rows = cifar
    dm = loaded(root)
    for split in ("train", "val", "test"):
        flat = dm.images(split).flatten(1).double()
        zeros, norms = torch.zeros(len(flat), dtype=torch.float64), torch.full((len(flat),), 55.0, dtype=torch.float64)
        torch.testing.assert_close(flat.mean(dim=1), zeros, rtol=0, atol=1e-5)
        torch.testing.assert_close(flat.norm(dim=1), norms, rtol=1e-5, atol=0)
    # and it is the centred image rescaled: proportional to (x - mean(x)) of the raw pixels
    raw = torch.from_numpy(rows["train"][:80]).double()
    centred = raw - raw.mean(dim=1, keepdim=True)
    expected = centred / centred.norm(dim=1, keepdim=True) * 55
    torch.testing.assert_close(dm.images("train").flatten(1).double(), expected, rtol=1e-5, atol=1e-4)


def test_gcn_scale_and_symmetric_scaling(cifar):
    root, _ = cifar
    flat = loaded(root, gcn_scale=10.0).images("test").flatten(1)
    torch.testing.assert_close(flat.norm(dim=1), torch.full((N_TEST,), 10.0), rtol=1e-5, atol=0)
    sym = loaded(root, scaling="symmetric").images("test")
    unit = loaded(root, scaling="unit").images("test")
    torch.testing.assert_close(sym, unit * 2 - 1)


def test_yaml_config_is_the_papers_and_instantiates(cifar, tmp_path):
    root, _ = cifar
    cfg = compose_train(["experiment=cifar10_fc", f"data.root={root}", "data.verify=false", "data.download=false",
                         "data.val_size=20", f"paths.output_dir={tmp_path}"])  # fmt: skip
    validate_config(cfg)
    assert list(cfg.data.shape) == [3, 32, 32] and cfg.data.scaling == "gcn" and cfg.data.gcn_scale == 55.0
    assert cfg.data.batch_size == 100 and cfg.data.download is False  # overridden above; the yaml says true
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup()
    assert dm.images("train").shape == (80, 3, 32, 32)
    default = compose_train(["data=cifar10", f"paths.output_dir={tmp_path}"]).data
    assert default.val_size == 10000 and default.download is True and default.verify is True


def test_missing_files_offline_say_where_and_how(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path / "empty"), download=False)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert f"CIFAR-10 not found in {(tmp_path / 'empty' / 'cifar-10-batches-py').resolve()}" in message
    assert "download is off (data.download=false)" in message and "Fix: set data.root" in message


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(self):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore detail")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    dm = CIFAR10DataModule(root=str(tmp_path / "empty"), download=True)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message and "the download failed: [Errno -3] Temporary failure" in message and "go online" in message


def test_verify_rejects_files_that_are_not_the_official_release(cifar):
    root, _ = cifar
    with pytest.raises(DataError) as info:
        loaded(root, verify=True)
    message = str(info.value)
    assert "\n" not in message and "corrupt or not the official release" in message and "data.verify=false" in message
    assert "data_batch_1 does not have the official md5 c99cafc152244af753f735de768cd75f" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-size"])
def test_corrupt_files_are_data_errors(tmp_path, damage):
    write_tiny_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    else:
        path.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}))
    with pytest.raises(DataError, match="corrupt or not the official release"):
        loaded(tmp_path)


def test_val_size_larger_than_the_training_set(cifar):
    root, _ = cifar
    with pytest.raises(DataError, match=r"data.val_size=100 must be between 1 and 99"):
        loaded(root, val_size=100)


def test_the_feature_network_is_trained_on_cifar10_as_the_quality_metrics_feed_it(cifar, tmp_path):
    from types import SimpleNamespace

    from gan.errors import DataError
    from gan.metrics.features import MissingFeatureNetwork, build_extractor, feature_key
    from gan.train_features import check_labelled, labelled_splits

    root, _ = cifar
    for scaling, key in (("gcn", "cifar10_minmax"), ("unit", "cifar10")):
        dm = loaded(root, scaling=scaling)
        assert feature_key(dm) == key  # one cached network per input transform
        train_x, _ = labelled_splits(dm)["train"]
        torch.testing.assert_close(train_x, dm.to_unit_range(dm.images("train")))  # what SampleQuality feeds it
        with pytest.raises(MissingFeatureNetwork, match=f"{key}.pt. Fix: run gan-train-features data=cifar10 data.scaling={scaling} "):
            build_extractor("trained", tmp_path, dm)
    with pytest.raises(DataError, match="TFD has no class labels here.*Fix: gan-train-features data=mnist, fashion_mnist, cifar10, or data=image_folder"):
        check_labelled(SimpleNamespace(name="TFD"))
