"""Reading checkpoints with errors that say what is wrong and how to fix it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from gan.errors import CheckpointError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents (tensors memory-mapped, so checking a big file is cheap)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist. Fix: pass the path of a .ckpt file, e.g. "
                              "outputs/<date>/<time>/checkpoints/last.ckpt")  # fmt: skip
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:
        raise CheckpointError(
            f"ckpt_path={path} is not a readable checkpoint ({type(error).__name__}). Fix: pass a .ckpt file "
            "written by gan-train (checkpoints/last.ckpt or a best checkpoint)"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path={path} is not a Lightning checkpoint (no state_dict). Fix: pass a .ckpt "
                              "file written by gan-train")  # fmt: skip
    return checkpoint


def training_seconds(checkpoint: dict[str, Any]) -> float | None:
    """The run's training time up to this checkpoint, over all its resumes: the state of Lightning's Timer
    (callbacks/timer.yaml); None for runs without it."""
    timer = checkpoint.get("callbacks", {}).get("Timer")
    return float(timer["time_elapsed"]["train"]) if timer else None


@contextlib.contextmanager
def architecture_errors_explained(ckpt_path: str | Path | None) -> Iterator[None]:
    """Turn PyTorch's long state_dict mismatch report into one line."""
    try:
        yield
    except RuntimeError as error:
        if ckpt_path is None or "state_dict" not in str(error):
            raise
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(
            f"{ckpt_path} was saved from a different architecture ({detail[:200]}). Fix: use the model and data "
            "configs it was trained with (the same experiment=...)"
        ) from None


def model_and_data_from_checkpoint(ckpt_path: str | Path, data_root: str | None = None):
    """Rebuild the LightningModule (weights loaded, eval mode) and the DataModule of the run that wrote
    `ckpt_path`, from the config gan-train stores in every checkpoint; `data_root` points at the local data."""
    from hydra.utils import instantiate

    from gan.callbacks.run_config import StoreRunConfig

    checkpoint = load_checkpoint(ckpt_path)
    stored = StoreRunConfig.stored(checkpoint)
    if stored is None:
        raise CheckpointError(f"{ckpt_path} holds no run config (not written by gan-train). Fix: use gan-eval with "
                              "the experiment=... it was trained with")  # fmt: skip
    model = instantiate(stored["model"])
    with architecture_errors_explained(ckpt_path):
        model.load_state_dict(checkpoint["state_dict"])
    data_config = dict(stored["data"], **({"root": data_root} if data_root else {}))
    return model.eval(), instantiate(data_config), stored
