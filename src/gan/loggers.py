"""Loggers: Weights & Biases that never blocks a run (offline whenever it could not sync), and a CSV logger
that a resumed run appends to."""

from __future__ import annotations

import csv
import logging
import netrc
import os
import socket
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

log = logging.getLogger("gan")
WANDB_HOST = "api.wandb.ai"


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_should_run_offline() -> tuple[bool, str]:
    """(offline?, why). WANDB_MODE set by the user always wins."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun", "disabled"), f"WANDB_MODE={mode}"
    if not _has_api_key():
        return True, "no W&B API key (WANDB_API_KEY or ~/.netrc)"
    if not _reachable(os.environ.get("WANDB_BASE_HOST", WANDB_HOST)):
        return True, f"{WANDB_HOST} is unreachable"
    return False, "API key found and W&B reachable"


class AutoOfflineWandbLogger(WandbLogger):
    """Lightning's WandbLogger with `offline="auto"`: online when a key is configured and W&B answers,
    otherwise offline (runs land in <save_dir>/wandb/offline-run-*; upload later with `wandb sync`)."""

    def __init__(self, offline: bool | str = "auto", **kwargs) -> None:
        if offline == "auto":
            offline, why = wandb_should_run_offline()
            log.info("W&B %s (%s)", "offline" if offline else "online", why)
        if offline and kwargs.get("log_model"):
            log.warning("W&B offline: log_model switched off (W&B cannot upload model artifacts offline)")
            kwargs["log_model"] = False
        Path(kwargs.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
        super().__init__(offline=bool(offline), **kwargs)


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing metrics.csv and appends to it (Lightning's writer deletes it when it starts)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run (auto_resume=true, same folder) keeps the log of the
    epochs before the resume. Steps logged after the last checkpoint and before an interruption appear twice."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
