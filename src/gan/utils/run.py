"""What every entry point does around the work: one-line errors, failure markers, printing the config."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gan.errors import DivergenceError, GANError

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
def user_errors_reported(run_folder: bool = True) -> Iterator[None]:
    """A GANError becomes one line on stderr, a FAILED file in the run folder, and exit code 1.

    A run that fails before training (no checkpoint yet) keeps nothing but its FAILED file (a sweep's job also
    its .hydra/, where the sweep's table finds its overrides). In a multirun the job prints its line and
    returns, so the sweep's other jobs keep running; the sweep's table lists it and the sweep exits 1
    (gan.utils.sweep). HYDRA_FULL_ERROR=1 shows the full traceback. `run_folder=False`: the entry point has
    no run folder of its own (gan-eval), so nothing is written or removed.
    """
    try:
        yield
    except GANError as error:
        message = f"{type(error).__name__}: {error}"
        if run_folder and (folder := output_dir()) is not None and folder.exists():
            (folder / "FAILED").write_text(message + "\n")
            if not isinstance(error, DivergenceError):  # raised during training only: its logs tell what happened
                _remove_what_a_failed_start_wrote(folder, keep_config=_in_multirun())
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.debug(message)
        print(f"error: {error}", file=sys.stderr, flush=True)
        if not _in_multirun():
            sys.exit(1)


# What a run writes before its first checkpoint: Hydra's config and log, the loggers' files, the untrained G.
_STARTUP_FILES = (".hydra", "csv", "tensorboard", "wandb", "samples", "figures")


def _remove_what_a_failed_start_wrote(folder: Path, keep_config: bool) -> None:
    """Nothing worth keeping is in a run folder without checkpoints; only what this run made there goes (a
    folder given with hydra.run.dir may hold other files from before)."""
    if (folder / "checkpoints").exists():
        return
    if str(folder.resolve()) in _FOLDER_CONTENTS:  # a run's folder, as CheckOutputFolder found it
        before = _FOLDER_CONTENTS[str(folder.resolve())]
    elif _in_multirun():  # a sweep's job folder, made by Hydra for this job
        before = set()
    else:  # a folder whose earlier contents are unknown
        return
    names = {*_STARTUP_FILES, *_log_files_in(folder)} - {".hydra" if keep_config else ""} - before
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)


def _log_files_in(folder: Path) -> set[str]:
    """The names of the log files Hydra's logging writes in `folder` (train.log, eval.log...)."""
    files = (Path(h.baseFilename) for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler))
    return {path.name for path in files if path.parent.resolve() == folder.resolve()}


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
_FOLDER_CONTENTS: dict[str, set[str]] = {}  # what each run folder held before this run (empty for a new one)


def _hold_folder(folder: str, key: str) -> None:
    """An exclusive lock on `folder` for this process's lifetime, or one line and exit 1 if another process
    holds it: two commands started in the same second get the same time-stamped folder by default, and would
    overwrite each other's config, logs and checkpoints. The kernel releases the lock when the process ends,
    crash included, so a resumed or requeued run takes it again; a normal exit also removes the file. File
    systems without flock are not locked."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return
    path = Path(folder) / ".lock"
    while True:
        handle = open(path, "a")  # noqa: SIM115 (held open until the process ends)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            print(f"error: another process is running in {folder} (a run started in the same second, or one given "
                  f"the same folder); this one would overwrite its files. Fix: pass {key}=<another folder>, or wait "
                  "for it to finish", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        except OSError:
            handle.close()
            return
        # The holder before this one unlinks the file as it exits, and a lock on that unlinked file guards
        # nothing (the next process locks a new file at the path): lock the file the path names now.
        if _is_file_at(handle, path):
            break
        handle.close()
    _HELD_FOLDERS.append(handle)
    atexit.register(_release_folder, handle, path)


def _is_file_at(handle, path: Path) -> bool:
    try:
        held, named = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _release_folder(handle, path: Path) -> None:
    """Unlink while still holding the lock, then let go: a process that opened the file meanwhile finds it
    unlinked once it gets the lock, and takes a new one (see _hold_folder)."""
    if not handle.closed:
        if _is_file_at(handle, path):
            path.unlink(missing_ok=True)
        handle.close()


class CheckOutputFolder(Callback):
    """Hydra callback, before any file of the job is written: fail with one line when the run or sweep folder is
    not writable or is in use by another process; otherwise hold it for this process."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(config.hydra.run.dir)
        _FOLDER_CONTENTS[str(folder.resolve())] = set(os.listdir(folder)) if folder.is_dir() else set()
        _ensure_writable(config.hydra.run.dir, "hydra.run.dir")
        if not _other_rank_of_a_run():
            _hold_folder(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _ensure_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
        if not _other_rank_of_a_run():
            _hold_folder(config.hydra.sweep.dir, "hydra.sweep.dir")
