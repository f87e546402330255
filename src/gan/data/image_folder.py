"""A user's own folder of images, too large for memory: training images stream from the files through worker
processes; the held-out splits (a fixed set of files, see gan.data.image_files) are held in memory like every
other dataset's, for the Parzen and quality estimates."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from gan.data.image_files import EXTENSIONS, ImageFiles, check_headers, find_images, split_by_file, split_position
from gan.data.loader import TensorBatchLoader
from gan.data.scaling import SCALINGS, to_unit_range
from gan.data.trainer_context import TrainerContext
from gan.errors import ConfigError, DataError

log = logging.getLogger("gan")


class ImageFolderDataModule(TrainerContext, LightningDataModule):
    """`path`: a folder of images, flat or one subfolder per class (torchvision ImageFolder; classes are not used
    for training). Images become `channels` x `image_size` x `image_size` (`resize`: shorter side to
    `image_size`, then a centre crop; without it all images must already be that size), pixels in [0, 1], then
    `scaling` as for the other datasets; `hflip`: random horizontal flips of training images.

    Splits by file: `val_fraction` and `test_fraction` of the files are held out, the same files in every run.
    Training batches come from `num_workers` processes (pinned memory on a GPU), each rank its share, resumable
    mid-epoch (gan.data.workers). `images("train")` is a fixed sample of `train_sample_size` training images
    (the generator's output bias is their mean, Figure 2's nearest neighbours are searched among them), not the
    whole split, which need not fit in memory. `device_resident`: the in-memory images live on the training device.
    """

    name = "image_folder"

    def __init__(
        self,
        path: str,
        image_size: int = 64,
        channels: int = 3,
        shape: Sequence[int] | None = None,
        resize: bool = True,
        hflip: bool = False,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        train_sample_size: int = 10000,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        scaling: str = "unit",
        gcn_scale: float = 55.0,
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 4,
        pin_memory: bool = True,
        device_resident: bool = True,
    ) -> None:
        super().__init__()
        # Checked when the run starts (setup), where errors reach the user as one line: Hydra wraps the constructor's.
        self.requested_shape = None if shape is None else tuple(shape)
        self.shape = (int(channels), int(image_size), int(image_size))
        self.root = Path(path).expanduser()
        self.resize, self.hflip = resize, hflip
        self.val_fraction, self.test_fraction, self.train_sample_size = val_fraction, test_fraction, train_sample_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.scaling, self.gcn_scale, self.shuffle, self.seed = scaling, float(gcn_scale), shuffle, seed
        self.num_workers, self.pin_memory, self.device_resident = num_workers, pin_memory, device_resident
        self.files: dict[str, list[str]] = {}  # split -> paths (val, test: in split order; train: as found)
        self.classes: list[str] = []
        self.splits: dict[str, torch.Tensor] = {}  # the in-memory images: val, test, and the train sample once asked

    # --- finding and checking the files ----------------------------------------------------------------------
    def _check_settings(self) -> None:
        if self.scaling not in SCALINGS:
            raise ConfigError(f"data.scaling={self.scaling!r} is not one of {list(SCALINGS)}")
        if self.shape[0] not in (1, 3):
            raise ConfigError(f"data.channels={self.shape[0]!r} is invalid: must be 1 (grey) or 3 (RGB)")
        if self.requested_shape is not None and self.requested_shape != self.shape:
            raise ConfigError(f"data.shape={list(self.requested_shape)} differs from [data.channels, data.image_size, "
                              f"data.image_size]={list(self.shape)}; set data.channels and data.image_size, not data.shape")  # fmt: skip
        if not (0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(f"data.val_fraction={self.val_fraction} and data.test_fraction={self.test_fraction} must "
                              "be > 0 with a sum < 1 (e.g. data.val_fraction=0.05 data.test_fraction=0.05)")  # fmt: skip
        if not self.root.is_dir():
            raise DataError(f"data.path={self.root} is not a folder{'' if self.root.exists() else ' (it does not exist)'}. "
                            "Fix: data.path=<a folder of images, flat or one subfolder per class>")  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.files:
            return
        self._check_settings()
        self.root = self.root.resolve()
        channels, size = self.shape[0], self.shape[1]
        paths, labels, self.classes = find_images(self.root)
        self._labels = dict(zip(paths, labels))
        if not paths:
            raise DataError(f"no image files ({', '.join(EXTENSIONS)}) under {self.root}. Fix: data.path=<a folder of "
                            "images, flat or one subfolder per class>")  # fmt: skip
        check_headers(self.root, paths, channels, size, self.resize)
        order = split_by_file(self.root, paths, self.val_fraction, self.test_fraction)
        in_split_order = {split: [paths[i] for i in indices] for split, indices in order.items()}
        # training: in the folder's order, so the sampler's permutation alone decides a batch's images
        self.files = {**in_split_order, "train": [paths[i] for i in sorted(order["train"])]}
        self._train_sample_paths = in_split_order["train"][: self.train_sample_size]
        empty = [split for split in ("train", "val", "test") if not self.files[split]]
        if empty:
            raise DataError(f"the {empty[0]} split of the {len(paths)} images under {self.root} is empty (held out by "
                            "file: see docs/data.md). Fix: add images, or change data.val_fraction/data.test_fraction")  # fmt: skip
        layout = f"{len(self.classes)} class folders" if self.classes else "a flat folder"
        log.info("%s: %d images in %s: %d training, %d validation, %d test; as %s", self.root, len(paths), layout,
                 len(self.files["train"]), len(self.files["val"]), len(self.files["test"]), list(self.shape))  # fmt: skip
        self.splits = {split: self._load(self.files[split]) for split in ("val", "test")}

    def _dataset(self, paths: Sequence[str], hflip: bool = False) -> ImageFiles:
        return ImageFiles(paths, self.shape[0], self.shape[1], self.resize, self.scaling, self.gcn_scale, hflip, self.seed)

    def _load(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode `paths` into one tensor, with the workers (no order to keep between runs: plain DataLoader)."""
        loader = DataLoader(self._dataset(paths), batch_size=256, num_workers=self.num_workers)
        return torch.cat(list(loader)).contiguous().to(self._data_device(self.device_resident))

    # --- Lightning hooks -----------------------------------------------------------------------------------
    def train_dataloader(self):
        self._check_a_batch_per_process(self.root, len(self.files["train"]))
        training = self._dataset(self.files["train"], self.hflip)
        return self._worker_loader(training, self.batch_size, True, with_epoch=True)

    def _eval_loader(self, split: str) -> TensorBatchLoader:
        rank, world = self._rank_world()
        return TensorBatchLoader(self.splits[split], self.eval_batch_size, rank=rank, world_size=world)

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    # --- what models and callbacks ask for ------------------------------------------------------------------
    def images(self, split: str) -> torch.Tensor:
        """val, test: the whole held-out split; train: the fixed sample of `train_sample_size` training images.
        As the networks see them, (N, *shape), on the data device."""
        self.setup()
        if split == "train" and "train" not in self.splits:
            self.splits["train"] = self._load(self._train_sample_paths)
        return self.splits[split]

    # --- the feature network of the quality metrics (gan-train-features data=image_folder) ---------------------
    @property
    def feature_cache_name(self) -> str:
        """This folder's feature network in the cache: its name, shape and a hash of its absolute path and held-out
        fractions (a network trained on another split has seen this split's test images)."""
        folder = self.root.resolve()
        digest = hashlib.sha1(f"{folder}|{self.val_fraction}|{self.test_fraction}".encode()).hexdigest()[:8]
        return f"folder_{folder.name}_{'x'.join(map(str, self.shape))}_{digest}"

    @property
    def feature_training_command(self) -> str:
        return (f"gan-train-features data=image_folder data.path={self.root} data.image_size={self.shape[1]} "
                f"data.channels={self.shape[0]} data.scaling={self.scaling} data.val_fraction={self.val_fraction} "
                f"data.test_fraction={self.test_fraction}")

    def labelled_splits(self, max_train: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{split: (images as the quality metrics feed them, in [0, 1]; class indices)}, the training split
        decoded into memory (its first `max_train` images in hash order, a sample across classes)."""
        self.setup()
        if len(self.classes) < 2:
            raise DataError(f"{self.root} has no class subfolders, and the feature network learns to tell classes "
                            "apart. Fix: sort the images into one subfolder per class, or use "
                            "callbacks.quality.feature=inception")  # fmt: skip
        train = sorted(self.files["train"], key=lambda path: split_position(self.root, path))[:max_train]
        images = {"train": self._load(train), "val": self.images("val"), "test": self.images("test")}
        paths = {"train": train, "val": self.files["val"], "test": self.files["test"]}
        return {split: (self.to_unit_range(images[split].cpu()), torch.tensor([self._labels[p] for p in paths[split]]))
                for split in images}  # fmt: skip

    def pixel_mean(self) -> torch.Tensor:
        """Mean training image in the networks' space (for the generator's output bias), over the sample."""
        return self.images("train").mean(dim=0)

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        return to_unit_range(images, self.scaling)

