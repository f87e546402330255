"""What every entry point does around the work: one-line errors, failure markers, printing the config."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gan.errors import GANError

log = logging.getLogger("gan")


def output_dir() -> Path | None:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not running under @hydra.main (tests calling train() directly)
        return None


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@contextlib.contextmanager
def user_errors_reported() -> Iterator[None]:
    """A GANError becomes one line on stderr, a FAILED file in the run folder, and exit code 1.

    Under a multirun the error is re-raised instead, so Hydra reports the job as failed and the sweep's
    other jobs keep running. HYDRA_FULL_ERROR=1 shows the full traceback.
    """
    try:
        yield
    except GANError as error:
        message = f"{type(error).__name__}: {error}"
        if (folder := output_dir()) is not None and folder.exists():
            (folder / "FAILED").write_text(message + "\n")
        if _in_multirun() or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.debug(message)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def print_config(cfg: DictConfig) -> None:
    """The composed config as YAML in the log (Hydra also saves it under .hydra/)."""
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=False))


def _ensure_writable(folder: str, key: str) -> None:
    try:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        print(f"error: cannot write the output folder {folder} ({error.strerror or error}). Fix: choose a writable "
              f"{key}=... or run from a writable directory", file=sys.stderr)  # fmt: skip
        sys.exit(1)


class CheckOutputFolder(Callback):
    """Hydra callback: fail with one line, before any work, when the run or sweep folder is not writable."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _ensure_writable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _ensure_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
