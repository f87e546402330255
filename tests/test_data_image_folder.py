"""data=image_folder: finding the files, the split by file, the images as the networks see them, and bad folders
(one line that names the fix). The streaming training loader and resume: test_data_image_folder_training.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import image_folder_datamodule, run_cli, write_image_folder


# --- the files and the split ---------------------------------------------------------------------------------
def test_split_is_by_file_hash_stable_when_files_are_added_and_ordered_by_the_hash(image_folder, tmp_path):
    from gan.data.image_files import find_images, split_by_file, split_position

    paths, labels, classes = find_images(image_folder)
    assert classes == ["class_0", "class_1", "class_2"] and len(paths) == 300 and sorted(set(labels)) == [0, 1, 2]
    relative = "class_1/0004.png"  # the documented rule: SHA-1 of the relative path, first 8 bytes / 2**64
    expected = int(hashlib.sha1(relative.encode()).hexdigest()[:16], 16) / 2**64
    assert split_position(image_folder, str(image_folder / relative)) == expected
    splits = split_by_file(image_folder, paths, 0.2, 0.1)
    assert sorted(i for s in splits.values() for i in s) == list(range(300))
    assert 40 <= len(splits["val"]) <= 80 and 15 <= len(splits["test"]) <= 45
    positions = [split_position(image_folder, paths[i]) for i in splits["val"]]
    assert positions == sorted(positions) and max(positions) < 0.2  # ordered by u, so any prefix is a sample
    assert len({labels[i] for i in splits["val"][:10]}) > 1  # ... across classes, not the first class folder's files

    bigger = write_image_folder(tmp_path / "copy", n=400)  # the same 300 files (same names) and 100 more
    more_paths, _, _ = find_images(bigger)
    more = split_by_file(bigger, more_paths, 0.2, 0.1)
    by_name = {split: {Path(more_paths[i]).relative_to(bigger) for i in idx} for split, idx in more.items()}
    for split, indices in splits.items():
        assert {Path(paths[i]).relative_to(image_folder) for i in indices} <= by_name[split]


def test_flat_folder_and_class_subfolders_are_both_read(tmp_path):
    from gan.data.image_files import find_images

    flat = write_image_folder(tmp_path / "flat", n=12, classes=0)
    (flat / "notes.txt").write_text("not an image")
    (flat / ".hidden.png").write_bytes(b"")
    paths, labels, classes = find_images(flat)
    assert len(paths) == 12 and classes == [] and set(labels) == {0}
    nested = write_image_folder(tmp_path / ".cache" / "nested", n=12, classes=2)  # a hidden folder above is fine
    (nested / "class_0" / "more").mkdir()
    Image.new("RGB", (16, 16)).save(nested / "class_0" / "more" / "deep.png")
    (nested / ".ipynb_checkpoints").mkdir()  # hidden folders and files are no classes and no images
    Image.new("RGB", (16, 16)).save(nested / ".ipynb_checkpoints" / "copy.png")
    Image.new("RGB", (16, 16)).save(nested / "class_1" / ".copy.png")
    paths, labels, classes = find_images(nested)
    assert len(paths) == 13 and classes == ["class_0", "class_1"]


# --- the images ----------------------------------------------------------------------------------------------
def test_images_reach_the_networks_resized_cropped_scaled_and_with_the_requested_channels(tmp_path):
    from torchvision.transforms.v2 import functional as F

    from gan.data.image_files import ImageFiles

    wide = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)  # H=20, W=40
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(wide[..., 0]).save(tmp_path / "grey.png")
    unit = ImageFiles([str(tmp_path / "wide.png")], channels=3, image_size=10)[0]
    expected = F.center_crop(F.resize(torch.from_numpy(wide).permute(2, 0, 1), 10, antialias=True), 10).float() / 255
    assert unit.shape == (3, 10, 10) and torch.allclose(unit, expected)
    symmetric = ImageFiles([str(tmp_path / "wide.png")], channels=3, image_size=10, scaling="symmetric")[0]
    assert torch.allclose(symmetric, unit * 2 - 1)
    grey_as_rgb = ImageFiles([str(tmp_path / "grey.png")], channels=3, image_size=10)[0]
    assert grey_as_rgb.shape == (3, 10, 10) and torch.equal(grey_as_rgb[0], grey_as_rgb[2])
    grey = ImageFiles([str(tmp_path / "grey.png")], channels=1, image_size=20, resize=False)
    with pytest.raises(Exception, match="became"):  # 20x40 without resize: refused, not collated into a wrong batch
        grey[0]


def test_datamodule_shape_held_out_splits_sample_and_pixel_mean(image_folder):
    data = image_folder_datamodule(image_folder, train_sample_size=50, scaling="symmetric")
    data.setup()
    assert data.shape == (3, 16, 16) and data.classes == ["class_0", "class_1", "class_2"]
    counts = {split: len(files) for split, files in data.files.items()}
    assert sum(counts.values()) == 300
    for split in ("val", "test"):
        images = data.images(split)
        assert images.shape == (counts[split], 3, 16, 16) and images.min() >= -1 and images.max() <= 1
        assert torch.equal(torch.cat(list(data.val_dataloader() if split == "val" else data.test_dataloader())), images)
    assert data.images("train").shape == (50, 3, 16, 16)
    assert torch.equal(data.pixel_mean(), data.images("train").mean(0))
    assert torch.allclose(data.to_unit_range(data.images("val")), (data.images("val") + 1) / 2)


# --- bad folders: one line, naming the fix --------------------------------------------------------------------
def _bad_folders(tmp_path: Path) -> dict[str, tuple[Path, dict, str]]:
    empty = tmp_path / "empty"
    (empty / "class_a").mkdir(parents=True)
    unreadable = write_image_folder(tmp_path / "unreadable", n=20, classes=0)
    (unreadable / "0007.png").write_bytes(b"not a png")
    mixed = write_image_folder(tmp_path / "mixed", n=10, classes=0)
    Image.new("RGB", (20, 16)).save(mixed / "odd.png")
    colour = write_image_folder(tmp_path / "colour", n=10, classes=0)
    both = write_image_folder(tmp_path / "both", n=10, classes=2)
    Image.new("RGB", (16, 16)).save(both / "loose.png")
    return {
        "empty folder": (empty, {}, r"no image files \(.jpg, .*Fix: data.path="),
        "unreadable image": (unreadable, {}, "1 of 20 files under .* cannot be read as images, e.g. 0007.png .*Fix: delete or replace"),
        "mixed sizes without resize": (mixed, {"resize": False}, "2 different sizes .*odd.png is 20x16.*Fix: data.resize=true"),
        "size without resize": (colour, {"resize": False, "image_size": 32}, r"are 16x16, not 32x32.*Fix: data.image_size=16 or data.resize=true"),
        "colour for 1 channel": (colour, {"channels": 1}, "10 of 10 images .* are in colour .*mode RGB.*Fix: data.channels=3"),
        "files beside class folders": (both, {}, "both class subfolders and image files .*loose.png.*Fix: move them"),
        "missing folder": (tmp_path / "nope", {}, "data.path=.*nope is not a folder .it does not exist.. Fix: data.path="),
        "shape override": (colour, {"shape": [3, 8, 8]}, r"data.shape=\[3, 8, 8\] differs .*set data.channels and data.image_size"),
        "nothing held out": (colour, {"val_fraction": 0.001}, "the val split of the 10 images .* is empty.*Fix: add images"),
    }


CASES = ["empty folder", "unreadable image", "mixed sizes without resize", "size without resize", "colour for 1 channel",
         "files beside class folders", "missing folder", "shape override", "nothing held out"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_folder_fails_at_setup_in_one_line(tmp_path, case):
    from gan.errors import GANError

    path, options, message = _bad_folders(tmp_path)[case]
    data = image_folder_datamodule(path, **options)  # the constructor never fails: Hydra would wrap its error in a traceback
    with pytest.raises(GANError, match=message) as error:
        data.setup()
    assert "\n" not in str(error.value)


def test_a_file_damaged_after_the_check_fails_in_one_line_from_a_worker_process(tmp_path):
    from gan.data.image_files import UnreadableImageError

    root = write_image_folder(tmp_path / "images", n=60, classes=0)
    data = image_folder_datamodule(root, num_workers=1, val_fraction=0.1)
    data.setup()
    for path in data.files["train"]:  # headers intact, pixel data cut: only decoding finds it
        Path(path).write_bytes(Path(path).read_bytes()[:100])
    with pytest.raises(UnreadableImageError) as error:
        next(iter(data.train_dataloader()))
    assert "\n" not in str(error.value) and "is truncated" in str(error.value) and "Fix: delete or replace it" in str(error.value)


def test_bad_folder_through_gan_train_is_one_line_and_writes_no_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("gan-train", "debug=fast", "data=image_folder", f"data.path={tmp_path / 'empty'}",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no image files (.jpg, .jpeg, .png")
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert (tmp_path / "run" / "FAILED").read_text().startswith("DataError")
