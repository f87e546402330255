"""MNIST and Fashion-MNIST through torchvision, with the paper's split: train[0:50000], valid[50000:], test."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torchvision import datasets

from gan.data.base import InMemoryImageDataModule
from gan.data.download import download_failure, no_empty_folders_left
from gan.errors import DataError

# md5 of the uncompressed IDX files torchvision reads (the .gz md5s are checked by torchvision itself).
RAW_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MNISTDataModule(InMemoryImageDataModule):
    """MNIST as the paper used it: 50,000 training, 10,000 validation (the last of the training file),
    the 10,000 test images; pixels /255.

    `download`: fetch through torchvision when the files are missing (needs the network).
    `verify`: check the md5 of the four files against the official release (turn off for other IDX data).
    `val_size`: how many of the training file's last images form the validation split.
    """

    name = "MNIST"
    torchvision_class = datasets.MNIST

    def __init__(self, download: bool = True, verify: bool = True, val_size: int = 10000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.download, self.verify, self.val_size = download, verify, val_size

    @property
    def raw_folder(self) -> Path:
        return Path(self.root) / self.torchvision_class.__name__ / "raw"

    def prepare_data(self) -> None:
        self._dataset(train=True)
        self._dataset(train=False)

    def _files_present(self) -> bool:
        return all((self.raw_folder / Path(url).stem).exists() for url, _ in self.torchvision_class.resources)

    def _dataset(self, train: bool):
        cls = self.torchvision_class
        if not self._files_present():
            if not self.download:
                raise DataError(self._missing_message("download is off (data.download=false)"))
            try:
                with no_empty_folders_left(Path(self.root), self.raw_folder.parent, self.raw_folder):
                    cls(self.root, train=train, download=True)
            except Exception as error:  # URLError, socket errors, HTTP errors, md5 mismatch of the download
                raise DataError(self._missing_message(f"the download failed: {download_failure(error)}")) from error
        try:
            return cls(self.root, train=train, download=False)
        except (ValueError, RuntimeError, OSError) as error:
            raise DataError(
                f"{self.name} files in {self.raw_folder} are unreadable ({str(error).splitlines()[0]}). "
                f"Fix: delete {self.raw_folder} and download or copy the files again"
            ) from error

    def _missing_message(self, why: str) -> str:
        return (
            f"{self.name} not found in {self.raw_folder.resolve()} and {why}. Fix: set data.root to the folder "
            f"that holds {self.torchvision_class.__name__}/raw/ (e.g. data.root=/path/to/data) or go online "
            "so torchvision can download it"
        )

    def _check_files(self) -> None:
        for name, expected in RAW_MD5[self.torchvision_class.__name__].items():
            path = self.raw_folder / name
            if path.exists() and _md5(path) != expected:
                raise DataError(
                    f"{path} has md5 {_md5(path)}, expected {expected} (the official {self.name} file). "
                    f"Fix: delete {self.raw_folder} and download again, or pass data.verify=false for other IDX data"
                )

    def _images(self, train: bool) -> torch.Tensor:
        data = self._dataset(train).data
        if data.ndim != 3 or data.dtype != torch.uint8:
            raise DataError(
                f"{self.name} images in {self.raw_folder} have shape {tuple(data.shape)} and type {data.dtype}, "
                "expected (N, 28, 28) uint8. Fix: replace the files with the official IDX files"
            )
        return data.unsqueeze(1).float().div_(255)

    def load_splits(self) -> dict[str, torch.Tensor]:
        if self.verify:
            self._check_files()
        return self.hold_out_validation(self._images(train=True), self._images(train=False), self.val_size, self.raw_folder)

class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al., 2017), same format, split and scaling as MNIST."""

    name = "Fashion-MNIST"
    torchvision_class = datasets.FashionMNIST
