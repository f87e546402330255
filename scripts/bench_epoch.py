"""What an epoch costs, split into training and each callback's epoch-end work (Parzen, samples, figures,
checkpoints), for the default callbacks of an experiment:

    python scripts/bench_epoch.py --experiment mnist_paper [--epochs 2] [--device cuda]

Prints seconds per part and the Parzen validation estimate's share of the epoch; a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections import defaultdict

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from lightning import Callback, seed_everything

from gan.utils.instantiate import instantiate_callbacks, instantiate_loggers

DEFAULT_DATA = "data"  # as paths.data_dir: the folder holding MNIST/raw/ (or set GAN_DATA_ROOT)
EPOCH_END_HOOKS = ("on_train_epoch_end", "on_validation_epoch_end", "on_validation_end", "on_train_start")


def timed(seconds: dict, name: str, hook, device: str):
    @functools.wraps(hook)
    def wrapper(*args, **kwargs):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = hook(*args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds[name] += time.perf_counter() - start
        return out

    return wrapper


class EpochClock(Callback):
    def __init__(self) -> None:
        self.epoch_seconds, self._start = [], None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_paper")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-root", default=os.environ.get("GAN_DATA_ROOT", str(DEFAULT_DATA)))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, initialize_config_module(config_module="gan.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}", f"data.root={args.data_root}",
                                          f"paths.output_dir={tmp}", f"trainer.max_epochs={args.epochs}",
                                          f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
                                          "callbacks.rich_progress_bar.refresh_rate=0", *args.overrides])  # fmt: skip
        seed_everything(cfg.seed)
        callbacks = instantiate_callbacks(cfg.callbacks)
        seconds: dict[str, float] = defaultdict(float)
        for callback in callbacks:
            for hook_name in EPOCH_END_HOOKS:
                if hook_name in type(callback).__dict__:
                    name = f"{type(callback).__name__}.{hook_name}"
                    setattr(callback, hook_name, timed(seconds, name, getattr(callback, hook_name), args.device))
        clock = EpochClock()
        trainer = instantiate(cfg.trainer, callbacks=[*callbacks, clock], logger=instantiate_loggers(cfg.logger),
                              enable_model_summary=False)  # fmt: skip
        trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
    epoch = sum(clock.epoch_seconds) / len(clock.epoch_seconds)
    per_epoch = {name: s / args.epochs for name, s in seconds.items()}
    parzen = sum(s for name, s in per_epoch.items() if name.startswith("ParzenLogLikelihood"))
    for name, s in sorted(per_epoch.items(), key=lambda kv: -kv[1]):
        print(f"{name:45s} {s:8.3f} s per epoch")
    print(f"epoch (training + validation) {epoch:.2f} s; Parzen validation estimate {parzen:.3f} s = {100 * parzen / epoch:.1f}% of it")
    print(json.dumps({"experiment": args.experiment, "device": args.device, "epoch_seconds": epoch,
                      "parzen_seconds": parzen, "parzen_share": parzen / epoch, "callbacks": per_epoch}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
