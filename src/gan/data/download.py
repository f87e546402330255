"""What a failed torchvision download says, and that it leaves no empty folders behind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def download_failure(error: BaseException) -> str:
    """The cause of a failed torchvision download, in one line.

    MNIST's reader gathers every mirror's error into one RuntimeError whose first line ("Error downloading
    train-images-idx3-ubyte.gz:") holds no cause; the causes follow "Tried <mirror>, got:" lines. CIFAR-10's
    raises the URLError itself ("<urlopen error [Errno -2] Name or service not known>")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    tried = [(line[len("Tried ") : -len(", got:")], lines[i + 1]) for i, line in enumerate(lines[:-1])
             if line.startswith("Tried ") and line.endswith(", got:")]  # fmt: skip
    if tried:
        mirror, cause = tried[0]
        more = f" (and {len(tried) - 1} other mirror{'s' * (len(tried) > 2)})" if len(tried) > 1 else ""
        return f"{_bare(cause)}, from {mirror}{more}"
    return _bare(lines[0]) if lines else type(error).__name__


def _bare(cause: str) -> str:
    return cause.removeprefix("<urlopen error ").removesuffix(">")


@contextlib.contextmanager
def no_empty_folders_left(*folders: Path) -> Iterator[None]:
    """When the body fails, remove those of `folders` it created and left empty (a failed download must not
    leave data/MNIST/raw/ behind, which reads as "the data is there")."""
    created = [Path(folder) for folder in folders if not Path(folder).exists()]
    try:
        yield
    except BaseException:
        for folder in sorted(created, key=lambda path: len(path.absolute().parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty, or already gone
                folder.rmdir()
        raise
