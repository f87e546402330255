"""data=image_folder: finding the files, the split by file, the images as the networks see them, the streaming
loader (ranks, workers, seeded flips, mid-epoch state), bad folders, and exact resume after SIGKILL."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning import Callback
from PIL import Image

from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def write_image_folder(root: Path, n: int = 300, size: int = 16, classes: int = 3, mode: str = "RGB", seed: int = 0) -> Path:
    """`n` PNGs in `classes` subfolders (0: flat), each class a different brightness plus noise."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    for i in range(n):
        label = i % max(classes, 1)
        folder = root / f"class_{label}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(60 + 60 * label + rng.normal(0, 40, (size, size, channels)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images"))


def _datamodule(path, **kwargs):
    from gan.data import ImageFolderDataModule

    options = dict(image_size=16, channels=3, batch_size=20, eval_batch_size=50, num_workers=0, val_fraction=0.2,
                   test_fraction=0.1, seed=3)  # fmt: skip
    return ImageFolderDataModule(str(path), **{**options, **kwargs})


# --- the files and the split ---------------------------------------------------------------------------------
def test_split_is_by_file_hash_stable_when_files_are_added_and_ordered_by_the_hash(folder, tmp_path):
    from gan.data.image_files import find_images, split_by_file, split_position

    paths, labels, classes = find_images(folder)
    assert classes == ["class_0", "class_1", "class_2"] and len(paths) == 300 and sorted(set(labels)) == [0, 1, 2]
    relative = "class_1/0004.png"  # the documented rule: SHA-1 of the relative path, first 8 bytes / 2**64
    assert split_position(folder, str(folder / relative)) == int(hashlib.sha1(relative.encode()).hexdigest()[:16], 16) / 2**64
    splits = split_by_file(folder, paths, 0.2, 0.1)
    assert sorted(i for s in splits.values() for i in s) == list(range(300))
    assert 40 <= len(splits["val"]) <= 80 and 15 <= len(splits["test"]) <= 45
    positions = [split_position(folder, paths[i]) for i in splits["val"]]
    assert positions == sorted(positions) and max(positions) < 0.2  # ordered by u, so any prefix is a sample
    assert len({labels[i] for i in splits["val"][:10]}) > 1  # ... across classes, not the first class folder's files

    bigger = write_image_folder(tmp_path / "copy", n=400)  # the same 300 files (same names) and 100 more
    more_paths, _, _ = find_images(bigger)
    more = split_by_file(bigger, more_paths, 0.2, 0.1)
    by_name = {split: {Path(more_paths[i]).relative_to(bigger) for i in idx} for split, idx in more.items()}
    for split, indices in splits.items():
        assert {Path(paths[i]).relative_to(folder) for i in indices} <= by_name[split]


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


def test_datamodule_shape_held_out_splits_sample_and_pixel_mean(folder):
    data = _datamodule(folder, train_sample_size=50, scaling="symmetric")
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


# --- the training loader -------------------------------------------------------------------------------------
def _batches(loader, epoch: int, limit: int | None = None) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    out = []
    for batch in loader:
        out.append(batch)
        if limit is not None and len(out) == limit:
            break
    return out


def test_training_loader_streams_every_rank_a_disjoint_equal_share_with_pinned_workers(folder):
    from torchdata.stateful_dataloader import StatefulDataLoader

    data = _datamodule(folder)
    data.setup()
    shares = []
    for rank in (0, 1):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2, strategy=SimpleNamespace(root_device=torch.device("cuda")))
        loader = data.train_dataloader()
        assert isinstance(loader, StatefulDataLoader) and loader.pin_memory  # pinned for a GPU
        shares.append([index for _, index in loader.sampler])
    n_train = len(data.files["train"])
    assert len(shares[0]) == len(shares[1]) == n_train // 2 and not set(shares[0]) & set(shares[1])
    data.trainer = None
    loader = data.train_dataloader()
    assert not loader.pin_memory and len(loader) == n_train // 20


def test_workers_change_nothing_and_flips_are_seeded_by_image_and_epoch(folder):
    one = _datamodule(folder, hflip=True)
    one.setup()
    two = _datamodule(folder, hflip=True, num_workers=2)
    two.setup()
    epoch1 = _batches(one.train_dataloader(), 1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, _batches(two.train_dataloader(), 1), strict=True))
    plain = _datamodule(folder, hflip=False)
    plain.setup()
    unflipped = _batches(plain.train_dataloader(), 1)
    flipped = [(a != b).flatten(1).any(1) for a, b in zip(epoch1, unflipped)]
    share = torch.cat(flipped).float().mean()
    assert 0.3 < share < 0.7  # about half the images flipped ...
    for a, b, f in zip(epoch1, unflipped, flipped):
        assert torch.equal(a[f], b[f].flip(-1)) and torch.equal(a[~f], b[~f])  # ... and flipped is all that differs
    again = _batches(one.train_dataloader(), 1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, again))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_state_mid_epoch_resumes_the_same_batches_in_a_new_process_state(folder, num_workers):
    data = _datamodule(folder, hflip=True, num_workers=num_workers)
    data.setup()
    full = _batches(data.train_dataloader(), 2)
    first = data.train_dataloader()
    seen = _batches(first, 2, limit=3)
    state = first.state_dict()
    assert state  # what Lightning writes into the checkpoint
    resumed = data.train_dataloader()  # a fresh loader, epoch never set: as Lightning creates it when resuming
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(seen) + len(rest) == len(full)
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, full, strict=True))


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
    data = _datamodule(path, **options)  # the constructor never fails: Hydra would wrap its error in a traceback
    with pytest.raises(GANError, match=message) as error:
        data.setup()
    assert "\n" not in str(error.value)


def test_a_file_damaged_after_the_check_fails_in_one_line_from_a_worker_process(tmp_path):
    from gan.data.image_files import UnreadableImageError

    root = write_image_folder(tmp_path / "images", n=60, classes=0)
    data = _datamodule(root, num_workers=1, val_fraction=0.1)
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


# --- exact resume ----------------------------------------------------------------------------------------------
def _train(run_dir: Path, path: Path, *extra: str):
    args = [
        "debug=fast", "data=image_folder", f"data.path={path}", "data.image_size=16", "data.channels=3",
        "data.num_workers=2", "data.hflip=true", "data.batch_size=20", "data.val_fraction=0.2", "data.test_fraction=0.1",
        f"hydra.run.dir={run_dir}", "trainer.max_epochs=2", "trainer.limit_train_batches=1.0",
        "trainer.deterministic=true", "test=false", "callbacks.parzen.select_points=20",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.every_n_epochs=null",
        "callbacks.model_checkpoint.every_n_train_steps=8",  # global_step counts D and G steps: every 4 batches
        "+callbacks.final._target_=tests.fault_injection.SaveFinalWeights", f"+callbacks.final.path={run_dir}/final.pt",
        *extra,
    ]  # fmt: skip
    return run_cli("gan-train", *args, env=ENV, cwd=run_dir.parent)


def test_sigkill_mid_epoch_with_workers_then_auto_resume_gives_bit_identical_weights(folder, tmp_path):
    from tests.test_resume import _assert_same_weights

    data = _datamodule(folder)
    data.setup()
    per_epoch = len(data.files["train"]) // 20
    assert 4 * 3 > per_epoch and 14 < 2 * per_epoch  # last.ckpt at batch 12 and the kill at 14 are in epoch 1
    reference = tmp_path / "uninterrupted"
    uninterrupted = _train(reference, folder)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    resumed = tmp_path / "killed"
    killed = _train(resumed, folder, "+callbacks.kill._target_=tests.fault_injection.KillAtBatch", "+callbacks.kill.batch=14")
    assert killed.returncode == -9
    at_kill = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert at_kill["gan_counters"]["batches_seen"] == 12 and at_kill["epoch"] == 1
    again = _train(resumed, folder, "auto_resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_weights(reference / "final.pt", resumed / "final.pt")


class RecordTrainingImages(Callback):
    """For real runs (+callbacks.x._target_=tests.test_data_image_folder.RecordTrainingImages): each process
    writes a fingerprint of every training image it was given."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath, self.seen = Path(dirpath), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += [hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() for image in batch]

    def on_train_end(self, trainer, pl_module) -> None:
        (self.dirpath / f"rank{trainer.global_rank}.txt").write_text("\n".join(self.seen))


@pytest.mark.slow
def test_two_processes_train_on_disjoint_shares_of_the_folder(folder, tmp_path):
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    result = run_cli("gan-train", "debug=fast", "trainer=ddp_cpu", "data=image_folder", f"data.path={folder}",
                     "data.image_size=16", "data.num_workers=1", "data.batch_size=20", "data.val_fraction=0.2",
                     "data.test_fraction=0.1", "callbacks.parzen.select_points=20", "test=false",
                     "trainer.limit_train_batches=1.0", f"hydra.run.dir={run_dir}",
                     "+callbacks.record._target_=tests.test_data_image_folder.RecordTrainingImages",
                     f"+callbacks.record.dirpath={run_dir}", env=ENV, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [(run_dir / f"rank{rank}.txt").read_text().splitlines() for rank in (0, 1)]
    data = _datamodule(folder)
    data.setup()
    per_rank = len(data.files["train"]) // 2 // 20 * 20
    assert len(seen[0]) == len(seen[1]) == per_rank and len(set(seen[0])) == per_rank
    assert not set(seen[0]) & set(seen[1])
