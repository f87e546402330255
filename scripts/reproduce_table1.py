"""Table 1 of the paper: train each dataset's paper experiment on several seeds, score each run with the full
Parzen protocol, and write a markdown table beside the paper's.

    python scripts/reproduce_table1.py --datasets mnist fashion_mnist --seeds 1 2 3 --epochs 300 \
        --data-root /path/to/data --out outputs/table1
    python scripts/reproduce_table1.py --datasets tfd --folds 0 1 2 3 4 --seeds 1 --data-root /path/with/TFD
    python scripts/reproduce_table1.py --fused --seeds 1 2 3 4 5 --epochs 800 --data-root /path/to/data \
        -- trainer=gpu model.cuda_graph=true     # five seeds as one fused model on one GPU
    python scripts/reproduce_table1.py --seeds 1 --epochs 700 --anneal-epochs 100 --ema-decay 0.9999 \
        --data-root /path/to/data --out outputs/table1_ema -- callbacks.parzen.val_samples=2000
        # trains a finished 600-epoch run on, annealing lr (the extra setting is the one that run was started with)

Runs go to <out>/<dataset>/seed<k>/ (TFD: <out>/tfd/fold<f>/seed<k>/); re-running the script resumes unfinished
runs and skips finished ones, trains a finished run longer when --epochs grows, and refuses a folder whose run
was started with other settings (or trained for more epochs). The table is <out>/table1.md (a call replaces the
rows of its datasets and keeps the others). The headline is the model at
the end of the budget (`gan-eval` on last.ckpt with the run's seed, recorded in <run>/table1_last.json): the
paper recorded no model selection. Beside it, each run's best checkpoint by val/parzen_ll (gan-train's test
stage). MNIST-like rows: mean +- sd over seeds (and the s.e. of the mean). TFD, as in the paper: one run per fold (each with its own
sigma), mean +- sd over folds (and seeds). Extra `key=value` arguments after `--` are passed to every
gan-train run, e.g. `-- trainer=gpu trainer.precision=bf16-mixed`.
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
PAPER = {"mnist": "225 +- 2", "tfd": "2057 +- 26 (over 5 folds)", "fashion_mnist": "(not in the paper)"}
SETTINGS_FILE = "table1_settings.json"  # the run's gan-train overrides, less data.root (machine-specific)


def max_epochs(settings: list[str]) -> int | None:
    return next((int(o.split("=", 1)[1]) for o in settings if o.startswith("trainer.max_epochs=")), None)


def default_budget(settings: list[str]) -> int | None:
    """trainer.max_epochs of the composed config, so every run records its budget as a number (None if the
    settings do not compose: gan-train then says why in its own line)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module="gan.conf", version_base="1.3"):
            budget = compose("train", overrides=[o for o in settings if not o.startswith("data.root=")]).trainer.max_epochs
    except (HydraException, OmegaConfBaseException):
        return None
    return budget if isinstance(budget, int) and budget >= 0 else None


def with_budget(settings: list[str]) -> list[str]:
    """The settings with an explicit trainer.max_epochs. Runs recorded before it was always written lack it: their
    budget is taken to be today's default of their experiment (the defaults have not changed since)."""
    if max_epochs(settings) is not None or (budget := default_budget(settings)) is None:
        return settings
    return [*settings, f"trainer.max_epochs={budget}"]


ANNEAL_KEYS = tuple(f"model.{net}_scheduler.anneal_{key}=" for net in "gd" for key in ("start_epoch", "epochs"))


def anneal_overrides(first_epoch: int, epochs: int) -> list[str]:
    return [f"{key}{first_epoch if 'start_epoch' in key else epochs}" for key in ANNEAL_KEYS]


def anneal(settings: list[str]) -> list[str]:
    """The anneal overrides that switch one on (`...anneal_start_epoch=null` is the default: no anneal)."""
    if anneal_start(settings) is None:
        return []
    return sorted(o for o in settings if o.startswith(ANNEAL_KEYS))


def anneal_start(settings: list[str]) -> int | None:
    values = [o.split("=", 1)[1] for o in settings if "anneal_start_epoch=" in o]
    if bad := [v for v in values if v != "null" and not v.isdigit()]:
        raise SystemExit(f"error: anneal_start_epoch={bad[0]} is not an epoch number. Fix: pass an integer >= 0, "
                         "or --anneal-epochs N to anneal the budget's last N epochs")
    return min((int(v) for v in values if v != "null"), default=None)


def recipe(settings: list[str]) -> list[str]:
    """The settings less the budget and the final lr anneal (which check_settings compares on its own)."""
    return [o for o in settings if not o.startswith(("trainer.max_epochs=", *ANNEAL_KEYS))]


def same_trained_epochs(before: list[str], settings: list[str]) -> bool:
    """Whether the epochs already trained saw the lr schedule that the new settings ask for: the same anneal, or
    a new one that starts after them (training 600 epochs on to 700 with an anneal from 600 equals a fresh
    700-epoch run with it)."""
    if anneal(before) == anneal(settings):
        return True
    new_start, old_budget = anneal_start(settings), max_epochs(before)
    return anneal_start(before) is None and new_start is not None and old_budget is not None and new_start >= old_budget


def check_settings(run_dir: Path, overrides: list[str]) -> None:
    """A run folder belongs to one set of settings: resuming or reusing it with others would mix results. The one
    change allowed is a larger --epochs (with, if asked, a final anneal over the new epochs): the run goes on from
    its last checkpoint, and its earlier test of the best checkpoint is kept as metrics.epochs<N>.json."""
    settings = [o for o in overrides if not o.startswith("data.root=")]
    recorded = run_dir / SETTINGS_FILE
    if recorded.exists():
        before = with_budget(json.loads(recorded.read_text()))
        old, new = max_epochs(before), max_epochs(settings)
        if recipe(before) != recipe(settings) or (old is None) != (new is None) or not same_trained_epochs(before, settings):
            changed = sorted(set(before) ^ set(settings))
            raise SystemExit(
                f"error: {run_dir} holds a run started with other settings (differing: {', '.join(changed)}). "
                "Fix: pass the same arguments as before (or a larger --epochs, to train it longer), or a new --out"
            )
        if new is not None and new < old:
            raise SystemExit(f"error: {run_dir} holds a run with a budget of {old} epochs, more than --epochs {new}. "
                             f"Fix: pass --epochs {old} (or more, to train it longer), or a new --out")
        if new is not None and new > old:
            print(f"note: {run_dir} had a budget of {old} epochs; it goes on to {new}", flush=True)
            if (finished := run_dir / "metrics.json").exists():
                finished.rename(run_dir / f"metrics.epochs{old}.json")
    else:  # a new run, or one from before settings were recorded
        run_dir.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(settings, indent=2) + "\n")


def run_step(command: list[str], folder: Path) -> None:
    """gan-train or gan-eval; a failure stops the script in one line (the command printed its own reason)."""
    if (code := subprocess.run(command).returncode) != 0:
        raise SystemExit(f"error: {command[2]} exited with {code}; its error is above and its log in {folder}. "
                         "Fix that, then re-run this script: finished runs are reused, unfinished ones resume")


def run_folder(dataset: str, seed: int, fold: int | None, args) -> Path:
    return Path(args.out) / dataset / (f"fold{fold}" if fold is not None else "") / f"seed{seed}"


def training_seconds(run_dir: Path) -> float | None:
    """The run's training time over all its resumes, from the Timer state in last.ckpt (None for runs whose
    checkpoints have none: started with callbacks that lack `timer`, or before it was a default)."""
    from gan.utils.checkpoints import load_checkpoint, training_seconds as from_timer

    last = run_dir / "checkpoints" / "last.ckpt"
    return from_timer(load_checkpoint(last)) if last.exists() else None


def wall_seconds_before(run_dir: Path) -> float:
    """The run's training time before this call: each earlier budget's record holds the time up to it, so the
    latest (the largest) is all of it."""
    earlier = [json.loads(f.read_text()).get("wall_seconds", 0.0) for f in run_dir.glob("metrics.epochs*.json")]
    return max(earlier, default=0.0)


def run_overrides(dataset: str, seed: int, fold: int | None, args, extra: list[str]) -> list[str]:
    return with_budget([f"experiment={EXPERIMENTS[dataset]}", f"seed={seed}", *([f"data.fold={fold}"] if fold is not None else []),
                        *([f"trainer.max_epochs={args.epochs}"] if args.epochs else []),
                        *([f"data.root={args.data_root}"] if args.data_root else []), *extra])  # fmt: skip


def train_fused(dataset: str, seeds: list[int], fold: int | None, args, extra: list[str]) -> None:
    """--fused: the seeds without a finished run train together, as one fused model (hydra/launcher=fused), each
    into its usual run folder; `train` then finds their metrics.json. Re-running resumes the group."""
    folders = {seed: run_folder(dataset, seed, fold, args) for seed in seeds}
    for seed, folder in folders.items():
        check_settings(folder, run_overrides(dataset, seed, fold, args, extra))
    pending = [seed for seed, folder in folders.items() if not (folder / "metrics.json").exists()]
    if not pending:
        return
    shared = [o for o in run_overrides(dataset, pending[0], fold, args, extra) if not o.startswith("seed=")]
    command = [sys.executable, "-m", "gan.train", "-m", f"seed={','.join(map(str, pending))}", "hydra/launcher=fused",
               f"hydra.sweep.dir={folders[pending[0]].parent}", "hydra.sweep.subdir=seed${seed}", "auto_resume=true",
               "callbacks.rich_progress_bar.refresh_rate=0", *shared]  # fmt: skip
    print(" ".join(command), flush=True)
    run_step(command, folders[pending[0]].parent)
    for seed in pending:
        if not (metrics_file := folders[seed] / "metrics.json").exists():
            raise SystemExit(f"error: seed {seed} of the fused run failed (its reason is above, and in "
                             f"{folders[seed] / 'FAILED'}). Fix that, then re-run this script")
        metrics = json.loads(metrics_file.read_text())
        # the group's training time (its Timer is every member's): count it once in the table, not once per seed
        metrics["wall_seconds"], metrics["fused_seeds"] = training_seconds(folders[seed]), pending
        metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def total_hours(results: list) -> float:
    """Training time of the runs: a fused group's time once, however many seeds it trained."""
    seconds, counted = 0.0, set()
    for _, m in results:
        group = tuple(m.get("fused_seeds") or ())
        if group in counted:
            continue
        if group:
            counted.add(group)
        seconds += m.get("wall_seconds") or float("nan")
    return seconds / 3600


def train(run_dir: Path, dataset: str, seed: int, fold: int | None, args, extra: list[str]) -> dict:
    """Train (or resume) one run; its metrics.json holds gan-train's test of the best checkpoint by val/parzen_ll."""
    overrides = run_overrides(dataset, seed, fold, args, extra)
    check_settings(run_dir, overrides)
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        return json.loads(metrics_file.read_text())
    command = [sys.executable, "-m", "gan.train", f"hydra.run.dir={run_dir}", "auto_resume=true",
               "callbacks.rich_progress_bar.refresh_rate=0", *overrides]  # fmt: skip
    start = time.time()
    print(" ".join(command), flush=True)
    run_step(command, run_dir)
    metrics = json.loads(metrics_file.read_text())
    seconds = training_seconds(run_dir)  # counts the parts of interrupted calls too
    metrics["wall_seconds"] = seconds if seconds is not None else time.time() - start + wall_seconds_before(run_dir)
    metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


LAST_RESULT = "table1_last.json"  # this script's own record: gan-eval's file next to the checkpoint may be rewritten by hand


def evaluate_last(run_dir: Path, seed: int, args) -> dict:
    """The full protocol on the model at the end of training (gan-eval with the run's seed, as gan-train's test
    stage samples); reused while last.ckpt is the same training step."""
    from gan.utils.checkpoints import load_checkpoint

    checkpoint, record = run_dir / "checkpoints" / "last.ckpt", run_dir / LAST_RESULT
    if not checkpoint.exists():
        raise SystemExit(f"error: {checkpoint} does not exist, so the end of training cannot be scored. "
                         "Fix: keep callbacks.model_checkpoint (save_last) enabled in the runs")
    saved = load_checkpoint(checkpoint)
    step = {"global_step": saved["global_step"], "epochs": saved["epoch"] + 1}
    if record.exists() and (result := json.loads(record.read_text()))["global_step"] == step["global_step"]:
        return result
    command = [sys.executable, "-m", "gan.eval", f"ckpt_path={checkpoint}",
               f"seed={seed}", *([f"data.root={args.data_root}"] if args.data_root else [])]  # fmt: skip
    print(" ".join(command), flush=True)
    run_step(command, run_dir)
    result = {**json.loads(checkpoint.with_suffix(".eval.json").read_text()), **step}
    record.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def describe(results: list) -> str:
    return ", ".join(
        f"{'' if fold is None else f'fold {fold} '}seed {seed}: {m['test/parzen_ll']:.1f} +- {m['test/parzen_se']:.1f} "
        f"({m['test/parzen_sigma']:.3f})"
        for (fold, seed), m in results
    )


HEADER = ("| model | dataset | epochs | Parzen log-likelihood at the end of training (mean +- sd over runs) | per run: test ll "
          "+- s.e. (sigma) | best checkpoint by val/parzen_ll, per run | paper (adversarial nets) | wall time |")


def merged_rows(table: Path, new_rows: dict[str, str]) -> list[str]:
    """This call's rows, after the rows of other datasets that an earlier call wrote to the same table (a table
    with other columns is replaced, with a note)."""
    lines = table.read_text().splitlines() if table.exists() else []
    if lines and lines[0] != HEADER:
        print(f"note: {table} has other columns (an older version of this script); its rows are replaced", flush=True)
        return list(new_rows.values())
    rows = [line for line in lines[2:] if line.startswith("|") and line.count("|") == HEADER.count("|")]
    return [row for row in rows if row.split("|")[2].strip() not in new_rows] + list(new_rows.values())


def summarise(lls: list[float]) -> str:
    if len(lls) == 1:
        return f"{lls[0]:.1f}"
    sd = statistics.stdev(lls)
    return f"{statistics.mean(lls):.1f} +- {sd:.1f} (s.e. {sd / math.sqrt(len(lls)):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist"], choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--folds", nargs="+", type=int, default=[0], choices=range(5),
                        help="TFD folds, one run each (the paper: 0 1 2 3 4); ignored for the other datasets")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the experiment's max_epochs (recorded, so a later, larger --epochs extends the run)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default="outputs/table1")
    parser.add_argument("--fused", action="store_true",
                        help="train the seeds together as one fused model on one device (hydra/launcher=fused)")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="evaluate an EMA of G's weights (e.g. 0.999): the paper's networks and recipe, a better estimate")
    parser.add_argument("--anneal-epochs", type=int, default=None,
                        help="not in the paper: over the last N epochs of --epochs, lr also falls linearly to ~0 "
                             "(model.*_scheduler.anneal_*); a finished run trains on into a new anneal with a larger --epochs")
    args, extra = parser.parse_known_args()
    if args.anneal_epochs is not None and not (args.epochs and 1 <= args.anneal_epochs <= args.epochs):
        parser.error(f"--anneal-epochs {args.anneal_epochs} needs --epochs, and at most that many epochs (>= 1): "
                     "the anneal is the budget's last N epochs. Fix: e.g. --epochs 700 --anneal-epochs 100")
    extra = [e for e in extra if e != "--"] + ([f"model.ema_decay={args.ema_decay}"] if args.ema_decay else [])
    if args.anneal_epochs:
        extra += anneal_overrides(args.epochs - args.anneal_epochs, args.anneal_epochs)

    rows = {}
    for dataset in args.datasets:
        folds = args.folds if dataset == "tfd" else [None]
        best, last = [], []
        for fold in folds if args.fused else []:
            train_fused(dataset, args.seeds, fold, args, extra)
        for fold, seed in [(fold, seed) for fold in folds for seed in args.seeds]:
            folder = run_folder(dataset, seed, fold, args)
            best.append(((fold, seed), train(folder, dataset, seed, fold, args, extra)))
            last.append(((fold, seed), evaluate_last(folder, seed, args)))
        epochs = sorted({m["epochs"] for _, m in last})  # trained, which a max_time or max_steps can make fewer
        hours = total_hours(best)
        model = EXPERIMENTS[dataset] + (" (stage 1 only)" if dataset == "tfd" else "")
        model += f" + EMA {args.ema_decay}" if args.ema_decay else ""
        model += f" + lr anneal over the last {args.anneal_epochs} epochs" if args.anneal_epochs else ""
        rows[dataset] = (
            f"| {model} | {dataset} | {', '.join(map(str, epochs))} | {summarise([m['test/parzen_ll'] for _, m in last])} "
            f"| {describe(last)} | {describe(best)} | {PAPER[dataset]} | {hours:.1f} h |"
        )
    out = Path(args.out) / "table1.md"
    table = "\n".join([HEADER, "|" + "---|" * (HEADER.count("|") - 1), *merged_rows(out, rows)]) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
