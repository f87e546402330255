"""Time to a Parzen target: train in stages, keep a checkpoint every few epochs, score each with the full
protocol, and report when the run first reached the target and whether it held.

    python scripts/time_to_parzen.py --target 225 --stages 600:0.9999 700:0.99995 --every 25 --score-from 400 \
        --out outputs/time_to_225 --data-root /path/to/data -- trainer=gpu model.cuda_graph=true

Each stage EPOCHS:EMA_DECAY trains the same run (<out>/run) on to EPOCHS epochs with that EMA decay (the recipe
of docs/results.md "Table 1 on MNIST": 0.9999, then 0.99995 from epoch 600). Arguments after `--` go to every gan-train
call. Scores are the full protocol that `gan-eval ... seed=<seed>` reports, computed in this process
(`--device`, default the GPU when there is one). Times: the training time that Lightning's Timer keeps in each
checkpoint (validation and checkpointing included), and the wall time since the first stage started (process
start-up and data loading included; a call cut short with the script counts to its last write). Checkpoints
before --score-from are not scored, so a target reached at the first scored one is reported as "at or
before". Re-running the script with the same settings resumes an interrupted stage and reuses the scores
already computed (wall times then add up over the calls); once a run exists, other settings are refused.
Writes <out>/time_to_parzen.md and .json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from gan.errors import GANError
from gan.utils.files import write_json_atomically

SETTINGS_FILE, CALLS_FILE, SCORES_FILE = "settings.json", "calls.json", "scores.json"


def stage(text: str) -> tuple[int, float]:
    epochs, _, decay = text.partition(":")
    try:
        parsed = int(epochs), float(decay)
    except ValueError:
        parsed = (0, 0.0)
    if parsed[0] < 1 or not 0.0 <= parsed[1] < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not EPOCHS:EMA_DECAY (e.g. 600:0.9999; decay in [0, 1), 0: no EMA)")
    return parsed


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return int(text)


def read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def epochs_trained(checkpoint_path: Path) -> int:
    from gan.utils.checkpoints import load_checkpoint

    return load_checkpoint(checkpoint_path)["epoch"] + 1 if checkpoint_path.exists() else 0


def train_stages(args, extra: list[str], out: Path) -> None:
    """Runs gan-train once per unfinished stage, recording each call's start and wall time."""
    run, calls = out / "run", read_json(out / CALLS_FILE, [])
    for epochs, decay in args.stages:
        if epochs_trained(run / "checkpoints" / "last.ckpt") >= epochs:
            continue
        command = [sys.executable, "-m", "gan.train", f"experiment={args.experiment}", f"seed={args.seed}",
                   f"hydra.run.dir={run}", "auto_resume=true", "test=false", f"trainer.max_epochs={epochs}",
                   f"model.ema_decay={decay or 'null'}", "callbacks=[default,snapshots]",
                   f"callbacks.snapshots.every_n_epochs={args.every}",
                   *([f"data.root={args.data_root}"] if args.data_root else []), *extra]  # fmt: skip
        print(f"stage {epochs}:{decay}: {' '.join(command[1:])}", flush=True)
        # Recorded before it starts, so that a call cut short with the script (a job's time limit) still counts
        call = {"stage": f"{epochs}:{decay}", "start": time.time(), "wall_seconds": None}
        calls.append(call)
        write_json_atomically(out / CALLS_FILE, calls)
        try:
            code = subprocess.run(command).returncode
        finally:
            call["wall_seconds"] = time.time() - call["start"]
            write_json_atomically(out / CALLS_FILE, calls)
        if code != 0:
            raise SystemExit(f"error: gan-train exited with {code}; its error is above and its log in {run}. Fix that, "
                             "then re-run this script with the same arguments: it resumes the stage")  # fmt: skip


def with_ends(calls: list[dict], run: Path) -> list[dict]:
    """Calls whose script was killed have no recorded end: the last file written under `run` during one stands for it."""
    written = [p.stat().st_mtime for p in run.rglob("*") if p.is_file()]
    filled = []
    for index, call in enumerate(calls):
        if call["wall_seconds"] is None:
            limit = calls[index + 1]["start"] if index + 1 < len(calls) else float("inf")
            during = [t for t in written if call["start"] <= t < limit]
            call = {**call, "wall_seconds": max(during, default=call["start"]) - call["start"]}
        filled.append(call)
    return filled


def wall_since_start(written_at: float, calls: list[dict]) -> float | None:
    """Seconds from the first stage's start to `written_at`, counting only the time spent inside gan-train calls."""
    for index, call in enumerate(calls):
        if call["start"] <= written_at <= call["start"] + call["wall_seconds"]:
            return sum(c["wall_seconds"] for c in calls[:index]) + written_at - call["start"]
    return None


def score_snapshots(args, out: Path) -> tuple[list[dict], list[int]]:
    """The scored rows, and the epochs before --score-from whose checkpoints were not scored."""
    import torch

    from gan.callbacks.run_config import StoreRunConfig
    from gan.metrics.checkpoint_parzen import CheckpointParzen
    from gan.utils.checkpoints import load_checkpoint, training_seconds

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scores, rows, unscored = read_json(out / SCORES_FILE, {}), [], []
    calls = with_ends(read_json(out / CALLS_FILE, []), out / "run")
    for path in sorted((out / "run" / "snapshots").glob("epoch_*.ckpt")):
        checkpoint = load_checkpoint(path)
        epochs = checkpoint["epoch"] + 1
        if epochs < args.score_from:
            unscored.append(epochs)
            continue
        key = f"{path.name}@{checkpoint['global_step']}"
        if key not in scores:
            result = CheckpointParzen(path, args.data_root, device=device).test()
            scores[key] = {"ll": result.ll, "se": result.se, "sigma": result.sigma}
            write_json_atomically(out / SCORES_FILE, scores)
        rows.append({"checkpoint": str(path), "epochs": epochs,
                     "ema_decay": checkpoint[StoreRunConfig.KEY]["model"].get("ema_decay"),
                     "training_seconds": training_seconds(checkpoint),
                     "wall_seconds": wall_since_start(path.stat().st_mtime, calls), **scores[key]})  # fmt: skip
        print(f"epoch {epochs}: {scores[key]['ll']:.1f} +- {scores[key]['se']:.1f}", flush=True)
    return rows, unscored


def missing_snapshots(rows: list[dict], unscored: list[int], every: int, trained: int) -> list[int]:
    """Epochs due a checkpoint that has none (a run killed between last.ckpt and the snapshot at one epoch end)."""
    present = {row["epochs"] for row in rows} | set(unscored)
    return [epochs for epochs in range(every, trained + 1, every) if epochs not in present]


def summary(rows: list[dict], target: float, unscored: list[int] = (), missing: list[int] = ()) -> dict:
    first = next((row for row in rows if row["ll"] >= target), None)
    held = first is not None and all(row["ll"] >= target for row in rows if row["epochs"] >= first["epochs"])
    best = max(rows, key=lambda row: row["ll"], default=None)
    # Reached at the first scored checkpoint: an unscored earlier one may have reached it too.
    bound = first is not None and first is rows[0] and bool(unscored)
    return {"target": target, "first_reached": first, "first_is_an_upper_bound": bound, "held_to_the_end": held,
            "best": best, "unscored_epochs": list(unscored), "missing_epochs": list(missing)}  # fmt: skip


def markdown(rows: list[dict], result: dict) -> str:
    def seconds(value):
        return "-" if value is None else f"{value:.0f} s"

    lines = ["| epochs | EMA decay | training time (Timer) | wall since start | Parzen (full protocol) |", "|---|---|---|---|---|"]
    lines += [f"| {r['epochs']} | {r['ema_decay']} | {seconds(r['training_seconds'])} | {seconds(r['wall_seconds'])} | "
              f"{r['ll']:.1f} +- {r['se']:.1f} |" for r in rows]  # fmt: skip
    first, target = result["first_reached"], result["target"]
    if first is None:
        best = result["best"]
        verdict = f"Not reached: {target} nats." + (f" Best: {best['ll']:.1f} at epoch {best['epochs']}." if best else "")
    else:
        held = "held at every later checkpoint" if result["held_to_the_end"] else "not held at every later checkpoint"
        when = "at or before" if result["first_is_an_upper_bound"] else "at"
        verdict = (f"First >= {target} nats {when} epoch {first['epochs']} ({first['ll']:.1f} +- {first['se']:.1f}): "
                   f"{seconds(first['training_seconds'])} of training, {seconds(first['wall_seconds'])} of wall time; {held}.")
        if result["first_is_an_upper_bound"]:
            verdict += f" The checkpoints of epochs {min(result['unscored_epochs'])}-{max(result['unscored_epochs'])} were not scored (--score-from)."
    if result["missing_epochs"]:
        verdict += f" No checkpoint was written at epochs {', '.join(map(str, result['missing_epochs']))}: the curve has gaps there."
    return "\n".join([*lines, "", verdict]) + "\n"


def check_settings(out: Path, settings: dict) -> None:
    """A folder holds one run: other settings would mix two runs' checkpoints in one curve."""
    recorded = read_json(out / SETTINGS_FILE, None)
    if recorded is None or not (out / "run" / "checkpoints" / "last.ckpt").exists():  # no run yet: nothing to mix
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomically(out / SETTINGS_FILE, settings)
    elif recorded != settings:
        differing = sorted(key for key in settings.keys() | recorded.keys() if settings.get(key) != recorded.get(key))
        raise SystemExit(f"error: {out} holds a run started with other settings (differing: {', '.join(differing)}). "
                         "Fix: pass a new --out, or the same arguments as before")  # fmt: skip


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def main() -> None:
    parser = OneLineErrors(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_paper")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=float, default=225.0, help="nats (the paper's MNIST number by default)")
    parser.add_argument("--stages", nargs="+", type=stage, default=[(600, 0.9999), (700, 0.99995)], metavar="EPOCHS:EMA_DECAY")
    parser.add_argument("--every", type=positive, default=25, help="epochs between the scored checkpoints")
    parser.add_argument("--score-from", type=int, default=0, help="score only checkpoints with at least this many epochs")
    parser.add_argument("--out", default="outputs/time_to_parzen")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default=None, help="where to score (default: cuda when available, else cpu)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    epochs = [e for e, _ in args.stages]
    if epochs != sorted(set(epochs)):
        parser.error(f"--stages must grow in epochs (got {' '.join(map(str, epochs))}); e.g. --stages 600:0.9999 700:0.99995")

    out = Path(args.out)
    check_settings(out, {"experiment": args.experiment, "seed": args.seed, "stages": [list(s) for s in args.stages],
                         "every": args.every, "overrides": extra})  # fmt: skip
    train_stages(args, extra, out)
    try:
        rows, unscored = score_snapshots(args, out)
        trained = epochs_trained(out / "run" / "checkpoints" / "last.ckpt")
    except GANError as error:
        parser.exit(2, f"time_to_parzen: error: {error}\n")
    result = summary(rows, args.target, unscored, missing_snapshots(rows, unscored, args.every, trained))
    write_json_atomically(out / "time_to_parzen.json", {"rows": rows, **result})
    (out / "time_to_parzen.md").write_text(table := markdown(rows, result))
    print(table, end="")


if __name__ == "__main__":
    main()
