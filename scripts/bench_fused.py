"""Fused multi-seed training vs the same runs one after another: aggregate training steps/s, measured in one run.

    python scripts/bench_fused.py --members 1 2 4 8 --steps 100 --data-root /path/to/data          # CPU
    OMP_NUM_THREADS=1 python scripts/bench_fused.py --clock cpu --members 1 2 4 8 --data-root /path/to/data
    python scripts/bench_fused.py --device cuda --cuda-graph --members 1 2 4 8 --steps 1000 --data-root ...

For each N, N fused members (hydra/launcher=fused's model: `gan.fused.FusedGAN` over N seeds) train `steps`
batches; the sequential baseline is one run alone of the same config (N runs one after another have the
aggregate steps/s of one). Both go through the real Lightning Trainer, timed from the start of batch `warmup` to
the start of batch `warmup + steps` (scripts/bench_train.py's StepTimer), with no per-epoch callbacks: the
epoch-end work (Parzen, samples) is per member in both cases. The two alternate `repeats` times (medians
reported), so a noisy machine slows both alike. Prints one line per N and a JSON summary last:
ratio = (N x fused steps/s) / (alone steps/s); the goal on one H200 with --cuda-graph is >= 5 at N = 8.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning import Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402
from bench_train import StepTimer, compose_config  # noqa: E402  (the same config and timer as the other bench)

from gan.fused.data import FusedDataModule  # noqa: E402
from gan.fused.module import FusedGAN  # noqa: E402
from gan.utils.instantiate import build  # noqa: E402


def _trainer(args, timer: StepTimer) -> Trainer:
    return Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=1, logger=False,
                   callbacks=[timer], limit_train_batches=args.warmup + args.steps + 1, limit_val_batches=0,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   log_every_n_steps=50, num_sanity_val_steps=0)  # fmt: skip


def _members(args, n: int, folder: str) -> list:
    built = []
    for seed in range(1, n + 1):
        cfg = compose_config(args, folder)
        cfg.seed = cfg.model.seed = cfg.data.seed = seed
        seed_everything(seed)
        built.append((build(cfg.data, "data"), build(cfg.model, "model")))
    return built


def steps_per_second(args, n: int | None) -> float:
    """Training steps/s of one run alone (n=None) or of n fused members (each step trains all n)."""
    with tempfile.TemporaryDirectory() as folder:
        built = _members(args, n or 1, folder)
        if n is None:
            datamodule, model = built[0]
        else:
            model = FusedGAN([module for _, module in built])
            datamodule = FusedDataModule([data for data, _ in built])
        timer = StepTimer(args.warmup, args.steps, args.device)
        _trainer(args, timer).fit(model, datamodule=datamodule)
        if timer.seconds is None:
            raise SystemExit(f"training stopped before batch {timer.end}; nothing was timed (its log is above)")
        return args.steps / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_paper")
    parser.add_argument("--members", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cuda-graph", action="store_true", help="model.cuda_graph=true for both (GPU only)")
    parser.add_argument("--data-root", default="data", help="the folder holding MNIST/raw/")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, which other jobs on a busy machine do not inflate")
    parser.add_argument("overrides", nargs="*", help="more key=value config overrides")
    args = parser.parse_args()
    args.precision, args.compile, args.no_progress_bar = "32-true", False, True  # what compose_config reads
    if args.clock == "cpu":
        bench_train.clock = time.process_time
    args.overrides = [*args.overrides, *(["model.cuda_graph=true"] if args.cuda_graph else [])]
    rows = {}
    for n in args.members:
        alone, fused = [], []
        for _ in range(args.repeats):
            alone.append(steps_per_second(args, None))
            fused.append(steps_per_second(args, n))
        alone_rate, fused_rate = statistics.median(alone), statistics.median(fused)
        rows[n] = {"alone_steps_per_s": alone_rate, "fused_steps_per_s": fused_rate,
                   "aggregate_ratio": n * fused_rate / alone_rate}  # fmt: skip
        print(f"N={n}: fused {fused_rate:.1f} steps/s x {n} members = {n * fused_rate:.1f} member-steps/s; "
              f"alone {alone_rate:.1f} steps/s; fused / sequential = {rows[n]['aggregate_ratio']:.2f}x", flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(json.dumps({"experiment": args.experiment, "device": device, "cuda_graph": args.cuda_graph,
                      "steps": args.steps, "repeats": args.repeats, "members": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
