"""The Toronto Face Database (TFD) as the paper used it: the unlabeled set of fold 0 of TFD_48x48.mat, /255.

TFD is not publicly downloadable; users bring the file. Layout (pylearn2's reader): `images` (N, 48, 48)
uint8, `folds` (N, 5) with, per fold, 0 unlabeled, 1 train, 2 valid, 3 test; `labs_ex` (expression 1-7,
-1 if none) and `labs_id` (identity), which a GAN does not need and this module does not require.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gan.data.base import InMemoryImageDataModule
from gan.errors import ConfigError, DataError

RESOLUTIONS = (48, 96)
# train_set -> the values of folds[:, fold] that form the training split
TRAIN_SETS = {"unlabeled": (0,), "train": (1,), "both": (0, 1)}
VAL_VALUE, TEST_VALUE = 2, 3


class TFDDataModule(InMemoryImageDataModule):
    """TFD from `root/TFD/TFD_<r>x<r>.mat` or `root/TFD_<r>x<r>.mat`.

    `resolution`: 48 (the paper) or 96. `fold`: which of the 5 folds (0-4) picks the splits.
    `train_set`: the training split: `unlabeled` (folds value 0, the paper's choice), `train` (1) or `both`.
    val = folds value 2 and test = folds value 3 of the same fold. Pixels /255, shape (1, r, r).
    """

    name = "TFD"

    def __init__(
        self,
        resolution: int = 48,
        fold: int = 0,
        train_set: str = "unlabeled",
        shape: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        if resolution not in RESOLUTIONS:
            raise ConfigError(f"data.resolution={resolution!r} is invalid: must be 48 or 96 (e.g. data.resolution=48)")
        if isinstance(fold, bool) or fold not in range(5):
            raise ConfigError(f"data.fold={fold!r} is invalid: must be one of 0, 1, 2, 3, 4 (e.g. data.fold=0)")
        if train_set not in TRAIN_SETS:
            raise ConfigError(
                f"data.train_set={train_set!r} is invalid: must be one of {', '.join(TRAIN_SETS)} "
                "(e.g. data.train_set=unlabeled, the paper's choice)"
            )
        super().__init__(shape=(1, resolution, resolution) if shape is None else shape, **kwargs)
        self.resolution, self.fold, self.train_set = resolution, fold, train_set

    @property
    def filename(self) -> str:
        return f"TFD_{self.resolution}x{self.resolution}.mat"

    def candidates(self) -> list[Path]:
        return [Path(self.root) / "TFD" / self.filename, Path(self.root) / self.filename]

    def path(self) -> Path:
        for candidate in self.candidates():
            if candidate.is_file():
                return candidate
        looked = " or ".join(str(c.parent.resolve()) for c in self.candidates())
        home = self.candidates()[0].parent.resolve()
        raise DataError(
            f"{self.filename} not found in {looked}. TFD is not publicly downloadable: obtain it yourself (from "
            f"the Toronto Face Database's authors). Fix: put {self.filename} in {home}/ "
            "or set data.root to the folder that holds it (or holds TFD/)"
        )

    def prepare_data(self) -> None:
        self.path()  # fail early, with the fix, if the file is not there

    def _load(self) -> tuple[Path, np.ndarray, np.ndarray]:
        import scipy.io

        path = self.path()
        try:
            mat = scipy.io.loadmat(str(path), variable_names=["images", "folds"])
        except NotImplementedError as error:  # MATLAB v7.3 files are HDF5, which loadmat cannot read
            raise DataError(
                f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read. Fix: re-save it in MATLAB "
                f"with save('{self.filename}', 'images', 'folds', 'labs_ex', 'labs_id', '-v7')"
            ) from error
        except Exception as error:  # truncated or not a .mat file: ValueError, OSError, TypeError, ...
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DataError(
                f"{path} is unreadable ({reason}). Fix: copy {self.filename} again from your TFD distribution"
            ) from error
        for key in ("images", "folds"):
            if key not in mat:
                found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "neither"
                raise DataError(
                    f"{path} has no '{key}' variable (of images and folds it has: {found}). "
                    f"Fix: use the original {self.filename} (variables images, folds, labs_ex, labs_id)"
                )
        return path, mat["images"], mat["folds"]

    def load_splits(self) -> dict[str, torch.Tensor]:
        path, images, folds = self._load()
        r = self.resolution
        if images.ndim != 3:
            raise DataError(
                f"{path}: 'images' has shape {images.shape}, expected 3-D (N, {r}, {r}). "
                f"Fix: use the original {self.filename}"
            )
        if images.shape[1:] != (r, r):
            raise DataError(
                f"{path}: 'images' are {images.shape[1]}x{images.shape[2]} but data.resolution={r}. "
                f"Fix: set data.resolution (and data.shape) to match the file, or use {self.filename}"
            )
        if folds.ndim != 2 or folds.shape[1] != 5:
            raise DataError(
                f"{path}: 'folds' has shape {folds.shape}, expected (N, 5) (one column per fold). "
                f"Fix: use the original {self.filename}"
            )
        if len(folds) != len(images):
            raise DataError(
                f"{path}: 'folds' has {len(folds)} rows but 'images' has {len(images)} images; they must match. "
                f"Fix: use the original {self.filename}"
            )
        if images.dtype != np.uint8 and images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(
                f"{path}: 'images' ({images.dtype}) has values in [{images.min()}, {images.max()}], expected "
                f"pixels in [0, 255]. Fix: use the original {self.filename}"
            )
        column = folds[:, self.fold]
        wanted = {
            "train": TRAIN_SETS[self.train_set],
            "val": (VAL_VALUE,),
            "test": (TEST_VALUE,),
        }
        splits = {}
        for split, values in wanted.items():
            index = np.flatnonzero(np.isin(column, values))
            if len(index) == 0:
                raise DataError(
                    f"{path}: the {split} split of fold {self.fold} is empty (no rows with folds[:, {self.fold}] "
                    f"in {list(values)}). Fix: pick another data.fold or data.train_set, or check the file"
                )
            selected = torch.from_numpy(np.ascontiguousarray(images[index])).float().div_(255)
            splits[split] = selected.unsqueeze(1)
        return splits
