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


def _other_rank_of_a_run() -> bool:
    """A DDP or SLURM process other than the first: it shares the first one's folder (and lock)."""
    return any((value := os.environ.get(name, "0")).isdigit() and int(value) > 0
               for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))  # fmt: skip


_HELD_FOLDERS: list = []  # the open lock files (module-level: launchers such as submitit pickle the callback)


def _hold_folder(folder: str, key: str) -> None:
    """An exclusive lock on `folder` for this process's lifetime, or one line and exit 1 if another process
    holds it: two commands started in the same second get the same time-stamped folder by default, and would
    overwrite each other's config, logs and checkpoints. The kernel releases the lock when the process ends,
    crash included, so a resumed or requeued run takes it again. File systems without flock are not locked."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return
    handle = open(Path(folder) / ".lock", "a")  # noqa: SIM115 (held open until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        print(f"error: another process is running in {folder} (a run started in the same second, or one given the "
              f"same folder); this one would overwrite its files. Fix: pass {key}=<another folder>, or wait for it "
              "to finish", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    except OSError:
        handle.close()
        return
    _HELD_FOLDERS.append(handle)


class CheckOutputFolder(Callback):
    """Hydra callback, before any file of the job is written: fail with one line when the run or sweep folder is
    not writable or is in use by another process; otherwise hold it for this process."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _ensure_writable(config.hydra.run.dir, "hydra.run.dir")
        if not _other_rank_of_a_run():
            _hold_folder(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _ensure_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
        if not _other_rank_of_a_run():
            _hold_folder(config.hydra.sweep.dir, "hydra.sweep.dir")
