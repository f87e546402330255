"""The table a sweep (`gan-train -m ...`) ends with: one row per job, read back from the job folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gan.utils.console import shown_path


def job_folders(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders (those Hydra saved overrides in), in job order."""
    folders = [path.parent.parent for path in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted(folders, key=lambda path: (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0, path.name))


def _overrides(folder: Path) -> list[str]:
    return [str(item) for item in OmegaConf.load(folder / ".hydra" / "overrides.yaml")]


def job_rows(sweep_dir: Path, metric: str | None) -> list[dict[str, str]]:
    """overrides (those that differ between jobs), status, the optimised metric and the folder of every job;
    read from the files every job writes (metrics.json, FAILED), so it holds for any launcher."""
    folders = job_folders(sweep_dir)
    overrides = {folder: _overrides(folder) for folder in folders}
    shared = set.intersection(*(set(items) for items in overrides.values())) if len(folders) > 1 else set()
    rows = []
    for folder in folders:
        row = {"job": folder.name, "overrides": " ".join(o for o in overrides[folder] if o not in shared) or "-",
               "status": "no result (still running, or killed)", "metric": "-", "folder": shown_path(folder)}  # fmt: skip
        if (folder / "FAILED").exists():
            reason = (folder / "FAILED").read_text().strip().splitlines()
            # FAILED starts with the error's type ("ConfigError: ..."); the reason itself is what fits the column
            row["status"] = f"failed: {reason[0].split(': ', 1)[-1] if reason else 'no reason recorded'}"
        elif (folder / "metrics.json").exists():
            row["status"] = "ok"
            value = json.loads((folder / "metrics.json").read_text()).get(metric) if metric else None
            row["metric"] = "-" if value is None else f"{value:.4g}"
        rows.append(row)
    return rows


def table(rows: list[dict[str, str]], metric: str | None) -> list[str]:
    columns = [("job", "job"), ("overrides", "overrides"), ("status", "status"), ("metric", metric or "metric"),
               ("folder", "folder")]  # fmt: skip
    widths = {key: max(len(title), *(len(row[key]) for row in rows)) for key, title in columns}
    widths["status"] = min(widths["status"], 60)  # a long reason is cut; FAILED holds it whole

    def line(cells: dict[str, str]) -> str:
        texts = []
        for key, _ in columns:
            text = cells[key]
            if len(text) > widths[key]:
                text = text[: widths[key] - 3] + "..."
            texts.append(text.ljust(widths[key]))
        return "  ".join(texts).rstrip()

    return [line(dict(columns)), *(line(row) for row in rows)]


class SweepTable(Callback):
    """Hydra callback: after the last job of a multirun, print the jobs' table; exit 1 if any job failed.

    Printed, not logged: after the jobs, the logging setup is the last job's (its log file) or Hydra's own."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        metric = config.get("optimized_metric")
        rows = job_rows(sweep_dir, metric)
        if not rows:
            return
        failed = sum(row["status"].startswith("failed") for row in rows)
        print(f"sweep {shown_path(sweep_dir)}: {len(rows)} job(s), {failed} failed", flush=True)
        print("\n".join(table(rows, metric)), flush=True)
        if failed:
            sys.exit(1)
