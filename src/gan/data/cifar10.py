"""CIFAR-10 through torchvision, with the paper's split: train[0:40000], valid[40000:50000], test batch.

The released CIFAR-10 code feeds the networks per-image global contrast normalised images (scale 55), so
`scaling` defaults to gcn here; `unit` ([0, 1]) and `symmetric` ([-1, 1]) are there for other models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from gan.data.base import InMemoryImageDataModule
from gan.data.download import download_failure, no_empty_folders_left
from gan.errors import DataError


class _UnverifiedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR-10 reader without the md5 checks (data.verify=false): torchvision's
    `check_integrity(path, md5=None)` only checks that the file exists, so the same reader accepts any
    data in the CIFAR-10 python format (a subset, a re-export, a test fixture)."""

    train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class CIFAR10DataModule(InMemoryImageDataModule):
    """CIFAR-10 as the paper's code used it: the first 40,000 training images, the last 10,000 as validation,
    the 10,000 test images; pixels /255 then `scaling` (gcn x `gcn_scale` by default, as the paper).

    `download`: fetch through torchvision when the files are missing (needs the network).
    `verify`: check the md5 of every file against the official release (torchvision's own check); turn it
    off for other data in the same format. `val_size`: how many of the last training images form val.
    """

    name = "CIFAR-10"

    def __init__(self, download: bool = True, verify: bool = True, val_size: int = 10000, **kwargs) -> None:
        kwargs.setdefault("shape", (3, 32, 32))
        kwargs.setdefault("scaling", "gcn")
        super().__init__(**kwargs)
        self.download, self.verify, self.val_size = download, verify, val_size

    @property
    def folder(self) -> Path:
        return Path(self.root) / datasets.CIFAR10.base_folder

    def _reader(self) -> type[datasets.CIFAR10]:
        return datasets.CIFAR10 if self.verify else _UnverifiedCIFAR10

    def prepare_data(self) -> None:
        self._dataset(train=True)
        self._dataset(train=False)

    def _files_present(self) -> bool:
        cls = datasets.CIFAR10
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return all((self.folder / name).is_file() for name in names)

    def _missing_message(self, why: str) -> str:
        return (
            f"{self.name} not found in {self.folder.resolve()} and {why}. Fix: set data.root to the folder that "
            f"holds {datasets.CIFAR10.base_folder}/ (e.g. data.root=/path/to/data) or go online so torchvision "
            "can download it"
        )

    def _dataset(self, train: bool) -> datasets.CIFAR10:
        if not self._files_present():
            if not self.download:
                raise DataError(self._missing_message("download is off (data.download=false)"))
            try:
                with no_empty_folders_left(Path(self.root)):
                    datasets.CIFAR10(self.root, train=train, download=True)  # checks the archive's md5 itself
            except Exception as error:  # URLError, socket errors, HTTP errors, md5 mismatch of the download
                raise DataError(self._missing_message(f"the download failed: {download_failure(error)}")) from error
        try:
            return self._reader()(self.root, train=train, download=False)
        except Exception as error:  # md5 mismatch (RuntimeError), truncated pickle, wrong keys or sizes
            fix = f"delete {self.folder} and download or copy the files again"
            reason = _first_line(error)
            if self.verify:
                fix += ", or pass data.verify=false for other data in the CIFAR-10 python format"
                reason = self._md5_mismatch() or reason
            raise DataError(
                f"{self.name} files in {self.folder} are corrupt or not the official release ({reason}). Fix: {fix}"
            ) from error

    def _md5_mismatch(self) -> str | None:
        """Which file fails torchvision's md5 check, if any (for a precise error message)."""
        cls = datasets.CIFAR10
        for name, md5 in cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]:
            if not check_integrity(str(self.folder / name), md5):
                return f"{name} does not have the official md5 {md5}"
        return None

    def _images(self, train: bool) -> torch.Tensor:
        data = self._dataset(train).data  # (N, 32, 32, 3) uint8, HWC
        if data.ndim != 4 or data.shape[1:] != (32, 32, 3) or data.dtype.name != "uint8":
            raise DataError(
                f"{self.name} images in {self.folder} have shape {tuple(data.shape)} and type {data.dtype}, "
                "expected (N, 32, 32, 3) uint8. Fix: replace the files with the official CIFAR-10 python batches"
            )
        return torch.from_numpy(data).permute(0, 3, 1, 2).float().div_(255).contiguous()

    def load_splits(self) -> dict[str, torch.Tensor]:
        return self.hold_out_validation(self._images(train=True), self._images(train=False), self.val_size, self.folder)
