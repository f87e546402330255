"""Checkpoints written atomically: a crash or a full disk while saving never leaves a corrupt file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gan.errors import CheckpointError
from gan.utils.files import mode_for_new_files


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the target folder, fsyncs it, then renames it over the target.

    os.replace is atomic on POSIX, so `last.ckpt` is always either the previous complete checkpoint
    or the new complete one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode_for_new_files())
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as error:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise CheckpointError(
                    f"could not write checkpoint {path} ({error.strerror or error}); the previous checkpoint "
                    "is intact. Fix: free disk space or make the folder writable, then resume from it"
                ) from error
            raise

