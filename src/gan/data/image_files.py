"""A folder of image files: finding them, the held-out split by file, checking them, reading one.

The split is a property of each file, not of a run: a file's relative path (e.g. `cats/0001.png`) is hashed
with SHA-1, the first 8 bytes read as a number u in [0, 1), and the file is validation if u < val_fraction,
test if u < val_fraction + test_fraction, training otherwise. Every run, seed and process count holds out the same
files, and adding files to the folder never moves an existing file to another split.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from gan.data.scaling import scale
from gan.errors import DataError

EXTENSIONS = datasets.folder.IMG_EXTENSIONS
# PIL modes that hold one grey channel (alpha, where present, is dropped); every other mode is colour.
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class UnreadableImageError(DataError):
    """A file that cannot be decoded. Raised in a loader worker, torch re-raises it in the main process with the
    worker's traceback in the message ("Caught ... Original Traceback ... Class: message"); the error stays one
    line by keeping only the message."""

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def _is_image(path: str) -> bool:
    """`path` relative to the data folder: an image file, with no hidden file or folder on the way."""
    return path.lower().endswith(EXTENSIONS) and not any(part.startswith(".") for part in Path(path).parts)


class _VisibleImageFolder(datasets.ImageFolder):
    """ImageFolder without hidden class folders (.ipynb_checkpoints, .cache, ...)."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        return classes, {name: index for index, name in enumerate(classes)}


def find_images(root: Path) -> tuple[list[str], list[int], list[str]]:
    """(paths, class indices, class names): torchvision's ImageFolder layout (one subfolder per class, searched
    recursively) when `root` has subfolders, else the image files directly in `root` (one class, no names)."""
    subfolders = [entry for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")]
    if not subfolders:
        paths = sorted(str(root / name) for name in os.listdir(root) if _is_image(name))
        return paths, [0] * len(paths), []
    loose = sorted(name for name in os.listdir(root) if _is_image(name) and (root / name).is_file())
    if loose:
        raise DataError(
            f"{root} holds both class subfolders and image files ({loose[0]}, ...); the files would be left out. "
            f"Fix: move them into a subfolder, or point data.path at a folder of one layout"
        )
    folder = _VisibleImageFolder(str(root), is_valid_file=lambda path: _is_image(os.path.relpath(path, root)),
                                 allow_empty=True)  # fmt: skip
    return [path for path, _ in folder.samples], [label for _, label in folder.samples], folder.classes


def split_position(root: Path, path: str) -> float:
    """u in [0, 1) from the SHA-1 of the path relative to `root` (see the module's docstring)."""
    relative = Path(path).relative_to(root).as_posix()
    return int.from_bytes(hashlib.sha1(relative.encode()).digest()[:8], "big") / 2**64


def split_by_file(root: Path, paths: Sequence[str], val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """{split: indices into `paths`}, each split ordered by u, so any prefix of a split is a sample of it across
    classes (the Parzen estimate takes the validation split's first images to choose sigma)."""
    positions = [split_position(root, path) for path in paths]
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for index in sorted(range(len(paths)), key=positions.__getitem__):
        u = positions[index]
        splits["val" if u < val_fraction else "test" if u < val_fraction + test_fraction else "train"].append(index)
    return splits


def _header(path: str) -> tuple[tuple[int, int], str] | str:
    """(size, mode) from the file's header (no decoding), or why it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, ValueError, SyntaxError) as error:  # PIL raises all three for damaged files
        return str(error).splitlines()[0] if str(error) else type(error).__name__


def check_headers(root: Path, paths: Sequence[str], channels: int, image_size: int, resize: bool) -> None:
    """Every file opens as an image, the images can become `channels` channels without losing information, and,
    without `resize`, all are image_size x image_size. Reads headers only, in threads (file access dominates)."""
    with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
        headers = list(pool.map(_header, paths))

    def relative(path: str) -> str:
        return Path(path).relative_to(root).as_posix()

    unreadable = [(path, header) for path, header in zip(paths, headers) if isinstance(header, str)]
    if unreadable:
        path, reason = unreadable[0]
        raise DataError(
            f"{len(unreadable)} of {len(paths)} files under {root} cannot be read as images, e.g. {relative(path)} "
            f"({reason}). Fix: delete or replace them"
        )
    if channels == 1:
        colour = [(path, mode) for path, (_, mode) in zip(paths, headers) if mode not in GREY_MODES]
        if colour:
            path, mode = colour[0]
            raise DataError(
                f"{len(colour)} of {len(paths)} images under {root} are in colour (e.g. {relative(path)}, mode "
                f"{mode}) but data.channels=1, and converting them to grey would lose information. Fix: data.channels=3 "
                "(or convert the files to greyscale first)"
            )
    if not resize:
        sizes = Counter(size for size, _ in headers)
        if len(sizes) > 1:
            (a, _), (b, _) = sizes.most_common(2)
            example = next(path for path, (size, _) in zip(paths, headers) if size == b)
            raise DataError(
                f"images under {root} have {len(sizes)} different sizes (most are {a[0]}x{a[1]}, {relative(example)} "
                f"is {b[0]}x{b[1]}) and data.resize=false. Fix: data.resize=true (resize and centre-crop each image "
                "to data.image_size)"
            )
        (width, height), _ = sizes.most_common(1)[0]
        if (width, height) != (image_size, image_size):
            fix = f"data.image_size={width} or data.resize=true" if width == height else "data.resize=true"
            raise DataError(
                f"the images under {root} are {width}x{height}, not {image_size}x{image_size} (data.image_size="
                f"{image_size}), and data.resize=false. Fix: {fix}"
            )


def item_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**63)


class ImageFiles(Dataset):
    """Image `paths` as the networks see them: `channels` channels (grey replicated for 3), resized so the shorter
    side is `image_size` and centre-cropped to a square (`resize`), pixels in [0, 1], then `scaling`.

    Items are asked for by index, or by (epoch, index) from EpochShardSampler(with_epoch=True): then the random
    horizontal flip (`hflip`) is drawn from a generator seeded by (seed, epoch, index). Per item, not per worker:
    a run resumed mid-epoch restarts its workers, and a worker's stream would restart with them, while the item's
    own seed repeats the uninterrupted run's flip exactly, whichever worker serves it and however many there are.
    """

    def __init__(self, paths: Sequence[str], channels: int, image_size: int, resize: bool = True,
                 scaling: str = "unit", gcn_scale: float = 55.0, hflip: bool = False, seed: int = 0) -> None:  # fmt: skip
        self.paths, self.mode, self.size = list(paths), "RGB" if channels == 3 else "L", image_size
        self.scaling, self.gcn_scale, self.hflip, self.seed = scaling, gcn_scale, hflip, seed
        resizing = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)] if resize else []
        self.transform = v2.Compose([v2.ToImage(), *resizing, v2.ToDtype(torch.float32, scale=True)])
        self.shape = (channels, image_size, image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        epoch, index = item if isinstance(item, tuple) else (None, item)
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)  # decodes the whole file: a truncated one fails here
        except (OSError, ValueError, SyntaxError) as error:
            raise UnreadableImageError(
                f"{path} cannot be read as an image ({str(error).splitlines()[0] if str(error) else type(error).__name__}). "
                "Fix: delete or replace it"
            ) from None
        pixels = self.transform(image)
        if tuple(pixels.shape) != self.shape:  # only without resize, for a file changed since the check
            raise UnreadableImageError(f"{path} became {list(pixels.shape)}, not {list(self.shape)}; Fix: data.resize=true")
        if self.hflip and epoch is not None:
            generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
            if torch.rand((), generator=generator) < 0.5:
                pixels = pixels.flip(-1)
        return scale(pixels.unsqueeze(0), self.scaling, self.gcn_scale)[0]
