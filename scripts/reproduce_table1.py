"""Table 1 of the paper: train each dataset's paper experiment on several seeds, score each run's best
checkpoint (by val/parzen_ll) with the full Parzen protocol, and write a markdown table beside the paper's.

    python scripts/reproduce_table1.py --datasets mnist fashion_mnist --seeds 1 2 3 --epochs 300 \
        --data-root ../shared/data --out outputs/table1
    python scripts/reproduce_table1.py --datasets tfd --data-root /path/with/TFD   # when you have TFD

Runs go to <out>/<dataset>/seed<k>/ (re-running the script resumes unfinished runs and skips finished ones);
the table is <out>/table1.md. Extra `key=value` arguments after `--` are passed to every gan-train run,
e.g. `-- trainer=gpu trainer.precision=bf16-mixed`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXPERIMENTS = {"mnist": "mnist_paper", "fashion_mnist": "fashion_mnist_paper", "tfd": "tfd_paper"}
PAPER = {"mnist": "225 +- 2", "tfd": "2057 +- 26", "fashion_mnist": "(not in the paper)"}


def train(dataset: str, seed: int, args, extra: list[str]) -> dict:
    run_dir = Path(args.out) / dataset / f"seed{seed}"
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        return json.loads(metrics_file.read_text())
    command = [sys.executable, "-m", "gan.train", f"experiment={EXPERIMENTS[dataset]}", f"seed={seed}",
               f"hydra.run.dir={run_dir}", "auto_resume=true", "callbacks.rich_progress_bar.refresh_rate=0",
               *( [f"trainer.max_epochs={args.epochs}"] if args.epochs else []),
               *( [f"data.root={args.data_root}"] if args.data_root else []), *extra]  # fmt: skip
    start = time.time()
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    metrics = json.loads(metrics_file.read_text())
    metrics["wall_seconds"] = time.time() - start
    metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def summarise(lls: list[float]) -> str:
    if len(lls) == 1:
        return f"{lls[0]:.1f}"
    return f"{statistics.mean(lls):.1f} +- {statistics.stdev(lls) / math.sqrt(len(lls)):.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist"], choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's max_epochs")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default="outputs/table1")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="evaluate an EMA of G's weights (e.g. 0.999): the paper's networks and recipe, a better estimate")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"] + ([f"model.ema_decay={args.ema_decay}"] if args.ema_decay else [])

    rows = ["| model | dataset | Parzen log-likelihood (ours, mean +- s.e. over seeds) | per seed: test ll +- s.e. (sigma) | paper (adversarial nets) | wall time |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for dataset in args.datasets:
        results = [(seed, train(dataset, seed, args, extra)) for seed in args.seeds]
        lls = [m["test/parzen_ll"] for _, m in results]
        per_seed = ", ".join(f"seed {s}: {m['test/parzen_ll']:.1f} +- {m['test/parzen_se']:.1f} ({m['test/parzen_sigma']:.3f})"
                             for s, m in results)  # fmt: skip
        hours = sum(m.get("wall_seconds", float("nan")) for _, m in results) / 3600
        model = EXPERIMENTS[dataset] + (f" + EMA {args.ema_decay}" if args.ema_decay else "")
        rows.append(f"| {model} | {dataset} | {summarise(lls)} | {per_seed} | {PAPER[dataset]} | {hours:.1f} h |")
    table = "\n".join(rows) + "\n"
    out = Path(args.out) / "table1.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
