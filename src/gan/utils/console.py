"""What a run prints: one line per log record, without the libraries' noise, and a short summary at the end.

Loaded by Hydra's logging config (conf/hydra/default.yaml) before anything else, so it imports neither torch nor
Lightning at module level.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

log = logging.getLogger("gan")

# Records that tell a user of this project nothing: Lightning's product tips, accelerators this run cannot
# have, and Lightning noting that the project brings its own model summary.
NOISE = ("💡 Tip:", "TPU available: False", "HPU available: False", "Trainer already configured with model summary")
# Python warnings with nothing to act on: a Lightning-internal deprecation of a torch API, and Lightning's hint
# to prefix `srun` (this project submits to SLURM through its launcher: `-m hydra/launcher=slurm`).
QUIET_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)", r".*The `srun` command is available on your system")


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(NOISE)


class ConsoleFormatter(logging.Formatter):
    """The message alone at INFO (the log file keeps time and source); "warning: ..." and "error: ..." above."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def one_line_per_record() -> None:
    """Lightning adds its own console handler to the `lightning` logger when imported, on top of the root
    logger's (Hydra's), so every record printed twice; with a root handler in place, records go there only."""
    import lightning  # noqa: F401 (the import adds the handler)

    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    if not logging.getLogger().handlers:  # not under Hydra (a library user): keep Lightning's own output
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def shown_path(path: Path) -> str:
    """Relative to the working directory when inside it (what a user types next), else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# The metrics a summary shows first, with how to print them; the others stay in metrics.json.
def _key_metrics(metrics: dict[str, float]) -> list[str]:
    shown = []
    for stage in ("test", "val"):
        if f"{stage}/parzen_ll" in metrics:
            text = f"{stage}/parzen_ll {metrics[f'{stage}/parzen_ll']:.1f}"
            if f"{stage}/parzen_se" in metrics:
                text += f" +- {metrics[f'{stage}/parzen_se']:.1f}"
            shown.append(text)
    labels = {"test/d_real": "D(x)", "test/d_fake": "D(G(z))"}  # then the other D statistics an objective logs
    shown += [f"{label} {metrics[key]:.3f}" for key, label in labels.items() if key in metrics]
    shown += [f"{key} {value:.3f}" for key, value in sorted(metrics.items())
              if key.startswith(("test/d_", "test/wasserstein")) and key not in labels]
    shown += [f"{key} {value:.3g}" for key, value in sorted(metrics.items())
              if key.startswith("test/") and key.split("/")[1].split("_")[0] in ("fid", "kid", "precision", "recall")]  # fmt: skip
    return shown


def _newest(folder: Path, pattern: str) -> str | None:
    files = sorted(folder.glob(pattern))
    return files[-1].name if files else None


def _newest_epoch(folder: Path) -> list[str]:
    """The figures of the latest epoch that has any (figure2_epoch_0025.png, figure3_epoch_0025.png)."""
    files = sorted(folder.glob("*_epoch_*.png"), key=lambda path: path.stem.rsplit("_", 1)[-1])
    newest = files[-1].stem.rsplit("_", 1)[-1] if files else None
    return sorted(path.name for path in files if path.stem.rsplit("_", 1)[-1] == newest)


# A newcomer looking at a short run's samples: the paper's MNIST GAN (seed 1234) draws one shape for every
# sample after its first epoch (val/parzen_ll about -225), a few blurry ones after the second (about -51),
# which reads as a broken run (docs/console.md).
EARLY_EPOCHS_NOTE = (
    "note: samples that all look alike after the first epoch or two are normal for mnist_paper: G collapses, "
    "then spreads out over the next epochs (docs/console.md)"
)


def _experiment() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().runtime.choices.get("experiment")
    except ValueError:  # not under @hydra.main
        return None


def run_summary(folder: Path, metrics: dict[str, float], epochs: int, started: float | None = None,
                experiment: str | None = None) -> list[str]:  # fmt: skip
    """The lines a run ends with: its folder, a few metrics, where samples, figures and checkpoints are."""
    took = f" in {time.strftime('%H:%M:%S', time.gmtime(time.time() - started))}" if started else ""
    trained = f", {epochs} epoch(s) trained" if epochs else ""
    lines = [f"done{took}{trained}: {shown_path(folder)}"]
    if shown := _key_metrics(metrics):
        lines.append("  metrics:     " + ", ".join(shown) + " (all in metrics.json, curves in csv/)")
    if (last := _newest(folder / "samples", "epoch_*.png")) is not None:
        lines.append(f"  samples:     {shown_path(folder / 'samples')}/ (epoch_0000.png: untrained G ... {last})")
    if figures := _newest_epoch(folder / "figures"):
        lines.append(f"  figures:     {shown_path(folder / 'figures')}/ ({', '.join(figures)})")
    if (folder / "checkpoints").is_dir():
        names = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt"))
        lines.append(f"  checkpoints: {shown_path(folder / 'checkpoints')}/ ({', '.join(names)})")
    if experiment == "mnist_paper" and 0 < epochs < 10:
        lines.append(EARLY_EPOCHS_NOTE)
    return lines


def log_run_summary(folder: Path, metrics: dict[str, float], epochs: int, started: float | None = None) -> None:
    for line in run_summary(folder, metrics, epochs, started, _experiment()):
        log.info(line)
