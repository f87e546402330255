"""gan-train-features on a folder of images with class subfolders, and the quality callback finding its network."""

from __future__ import annotations

import json

import pytest

from gan.errors import DataError
from tests.helpers import image_folder_datamodule, run_cli, write_image_folder


def test_gan_train_features_learns_a_folders_classes_and_the_quality_metrics_find_the_network(tmp_path):
    from gan.metrics.features import build_extractor

    folder = write_image_folder(tmp_path / "images", n=240, classes=3)
    cache = tmp_path / "cache"
    data = [f"data.path={folder}", "data.image_size=16", "data.channels=3", "data.num_workers=0",
            "data.val_fraction=0.2", "data.test_fraction=0.2"]  # fmt: skip
    result = run_cli("gan-train-features", "data=image_folder", *data, "features.epochs=10", "features.batch_size=16", "features.channels=[8]",
                     "features.feature_dim=16", f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert summary["num_classes"] == 3 and summary["test_accuracy"] > 0.9  # classes differ in brightness
    datamodule = image_folder_datamodule(folder, val_fraction=0.2, test_fraction=0.2)
    assert summary["dataset"] == datamodule.feature_cache_name and summary["path"].startswith(str(cache))
    extractor = build_extractor("trained", cache, datamodule)  # what callbacks.quality=trained loads for this folder
    assert extractor(datamodule.images("test")[:4]).shape == (4, 16)


def test_a_folder_without_classes_names_the_fix_and_a_missing_network_names_its_command(tmp_path):
    from gan.metrics.features import MissingFeatureNetwork, build_extractor

    flat = image_folder_datamodule(write_image_folder(tmp_path / "flat", n=60, classes=0))
    with pytest.raises(DataError, match="no class subfolders.*one subfolder per class.*feature=inception"):
        flat.labelled_splits()
    labelled = image_folder_datamodule(write_image_folder(tmp_path / "labelled", n=60, classes=2))
    with pytest.raises(MissingFeatureNetwork, match=r"Fix: run gan-train-features data=image_folder data.path="):
        build_extractor("trained", tmp_path / "empty_cache", labelled)


def test_gan_train_features_on_a_folder_without_its_path_is_one_line(tmp_path):
    result = run_cli("gan-train-features", "data=image_folder", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.path is not set"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
