"""Writing result files whole: a temporary file in the target folder, renamed over the target."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def mode_for_new_files() -> int:
    """The mode open() gives a new file under this process's umask (mkstemp's 0600 would hide results and
    checkpoints from the rest of a team in a shared project folder)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json_atomically(path: Path, payload: dict | list) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode_for_new_files())
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
