"""Framework vs bare PyTorch loop: steps/s of the same GAN, alternating the two in one run.

    python scripts/bench_train.py --experiment mnist_paper --steps 300 --repeats 3
    python scripts/bench_train.py --experiment mnist_pytorch_gan --device cuda --precision bf16-mixed
    python scripts/bench_train.py --experiment mnist_paper --device cuda --precision bf16-mixed --compile --bare-eager
    OMP_NUM_THREADS=1 python scripts/bench_train.py --experiment mnist_pytorch_gan --clock cpu --repeats 0 --profile 12

(a) the real framework: GAN LightningModule, DataModule, Trainer with the experiment's default callbacks
    and logger (CSV); the time of the training batches only, each with all its hooks (the epoch-end work,
    evaluation, figures and checkpoints, is timed separately by scripts/bench_epoch.py);
(b) a bare loop: the same networks, optimisers, schedules, batch size and in-memory data, the same
    update written inline.
Prints steps/s of each, the median ratio a/b, and peak memory; a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from lightning import Callback, seed_everything
from omegaconf import open_dict

from gan.utils.instantiate import instantiate_callbacks, instantiate_loggers
from gan.utils.nvml import NVML_CHECK_FLAG

DEFAULT_DATA = "data"  # as paths.data_dir: the folder holding MNIST/raw/ (or set GAN_DATA_ROOT)


def compose_config(args, output_dir: str):
    overrides = [f"experiment={args.experiment}", f"data.root={args.data_root}", f"paths.output_dir={output_dir}",
                 f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.devices=1",
                 f"trainer.precision={args.precision}", f"model.compile={str(args.compile).lower()}",
                 "extras.print_config=false", *args.overrides]  # fmt: skip
    with initialize_config_module(config_module="gan.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.callbacks.pop("rich_progress_bar", None) if args.no_progress_bar else None
    return cfg


# Wall time by default; --clock cpu counts this process's CPU time instead, which other jobs on a busy
# machine do not inflate (use it with OMP_NUM_THREADS=1, where CPU time is the time of the one thread).
clock = time.perf_counter


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class StepTimer(Callback):
    """Time of training batches [warmup, warmup + steps): from the start of batch `warmup` to the start of
    batch `warmup + steps`, so each timed batch comes with everything Lightning and every callback do around
    it (hooks, logging, the next batch's fetch). The epoch-end work (here a one-epoch run's final figures and
    checkpoint) comes once per real epoch of hundreds of batches; bench_epoch.py times it."""

    def __init__(self, warmup: int, steps: int, device: str) -> None:
        self.warmup, self.end, self.device, self.start, self.seconds = warmup, warmup + steps, device, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx in (self.warmup, self.end):
            sync(self.device)
            if batch_idx == self.warmup:
                self.start = clock()
            else:
                self.seconds = clock() - self.start


def run_framework(cfg, args) -> float:
    seed_everything(cfg.seed)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    timer = StepTimer(args.warmup, args.steps, args.device)
    callbacks = [*instantiate_callbacks(cfg.callbacks), timer]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_loggers(cfg.logger), max_epochs=1,
                          limit_train_batches=args.warmup + args.steps + 1, limit_val_batches=0,
                          enable_model_summary=False, enable_progress_bar=not args.no_progress_bar)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    if timer.seconds is None:
        raise SystemExit(f"the framework stopped before batch {timer.end} (its log is above); nothing was timed")
    return args.steps / timer.seconds


def run_bare(cfg, args) -> float:
    """The same update as the framework, written as a plain loop over in-memory tensors."""
    # A plain PyTorch program never has the CUDA-probe flag that importing Lightning sets (see gan.utils.nvml).
    flag = os.environ.pop(NVML_CHECK_FLAG, None)
    try:
        return _bare_loop(cfg, args)
    finally:
        if flag is not None:
            os.environ[NVML_CHECK_FLAG] = flag


def _bare_loop(cfg, args) -> float:
    seed_everything(cfg.seed)
    device = torch.device(args.device)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    data = datamodule.images("train").to(device)
    model = instantiate(cfg.model)
    generator, discriminator, noise = model.generator.to(device), model.discriminator.to(device), model.noise.to(device)
    objective = model.objective
    if args.compile and not args.bare_eager:
        generator.compile()
        discriminator.compile()
    opt_g, opt_d = model.g_optimizer(params=generator.parameters()), model.d_optimizer(params=discriminator.parameters())
    sched_g = model.g_scheduler(optimizer=opt_g) if model.g_scheduler is not None else None
    sched_d = model.d_scheduler(optimizer=opt_d) if model.d_scheduler is not None else None
    batch_size, simultaneous = cfg.data.batch_size, cfg.model.update_scheme == "simultaneous"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed" and not args.bare_eager)
    order = torch.randperm(len(data), device=device)
    start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(args.device)
            start = clock()
        real = data[order[step * batch_size : (step + 1) * batch_size]]
        with autocast:
            if simultaneous:
                fake = generator(noise(batch_size))
                fake_input = fake.detach().requires_grad_()
                real_logits, fake_logits = discriminator(real), discriminator(fake_input)
                d_loss = objective.discriminator_loss(real_logits, fake_logits)
                (grad_fake,) = torch.autograd.grad(objective.generator_loss(fake_logits), fake_input, retain_graph=True)
                opt_d.zero_grad(set_to_none=True)
                opt_g.zero_grad(set_to_none=True)
                (d_loss + (fake * grad_fake).sum()).backward()
            else:
                with torch.no_grad():
                    fake = generator(noise(batch_size))
                d_loss = objective.discriminator_loss(discriminator(real), discriminator(fake))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                discriminator.requires_grad_(False)
                g_loss = objective.generator_loss(discriminator(generator(noise(batch_size))))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                discriminator.requires_grad_(True)
        if simultaneous:
            opt_d.step()
        opt_g.step()
        for scheduler in (sched_g, sched_d):
            if scheduler is not None:
                scheduler.step()
    sync(args.device)
    return args.steps / (clock() - start)


def check_one_epoch_holds_the_steps(cfg, args) -> None:
    """Both arms time batches of one epoch (the framework's epoch end is not part of a step); the framework's
    clock stops at the start of the batch after the last timed one, so the epoch must hold that one too."""
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    batches = len(datamodule.images("train")) // cfg.data.batch_size
    if args.warmup + args.steps + 1 > batches:
        raise SystemExit(f"--warmup + --steps + 1 = {args.warmup + args.steps + 1} batches is more than one epoch of "
                         f"{cfg.data._target_.rsplit('.', 1)[-1]} ({batches} batches of {cfg.data.batch_size}); "
                         f"ask for at most {batches - args.warmup - 1} steps")


def profile_both(cfg_for, args, top: int) -> None:
    """One more run of each arm under cProfile: the bare arm's `top` heaviest functions (by own time), with
    calls and seconds in both arms. On the CPU the kernels (linear, backward, the optimizer) show whether the
    framework's step computes more, or the same work more slowly (on CUDA a function's own time is its launch,
    not its kernel). Whole runs are profiled, set-up and, in the framework only, the epoch end included: its
    Figures 2-3 add a few `linear` calls and a `cdist`; Lightning's own functions appear in the framework only."""
    import cProfile
    import pstats

    stats = {}
    for name, run in (("framework", run_framework), ("bare", run_bare)):
        profiler = cProfile.Profile()
        profiler.runcall(run, cfg_for(f"profile_{name}"), args)
        stats[name] = {pstats.func_std_string(f): (calls, own) for f, (_, calls, own, _, _) in pstats.Stats(profiler).stats.items()}
    heaviest = sorted(stats["bare"], key=lambda f: -stats["bare"][f][1])[:top]
    print(f"{'function (the bare arm heaviest first)':70s} {'framework calls, s':>20s} {'bare calls, s':>18s}")
    for function in heaviest:
        cells = [f"{c:7d} {t:9.3f}" for c, t in (stats[arm].get(function, (0, 0.0)) for arm in ("framework", "bare"))]
        print(f"{function[-70:]:70s} {cells[0]:>20s} {cells[1]:>18s}")


def reset_peak_memory(device: str) -> bool:
    """Starts each arm's peak afresh: CUDA's allocator statistics, or on Linux the process's peak RSS
    (writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS). False where it cannot be reset."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory(device: str, reset: bool) -> tuple[float, str]:
    """(MiB, what was measured)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "CUDA, peak allocated in this arm"
    if reset:
        high_water = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
        return int(high_water.split()[1]) / 2**10, "peak RSS in this arm, the process's memory included"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, "process peak RSS so far"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_paper")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--bare-eager", action="store_true",
                        help="the bare loop stays eager fp32 whatever --precision and --compile give the framework "
                             "(the GPU target: the framework with its switches >= a bare eager loop)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="wall: elapsed time; cpu: this process's CPU time (for busy machines, with OMP_NUM_THREADS=1)")
    parser.add_argument("--no-progress-bar", action="store_true", help="no progress bar at all (the default config shows a rich one)")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="then run each arm once more under cProfile and compare the TOP heaviest functions")
    parser.add_argument("--data-root", default=os.environ.get("GAN_DATA_ROOT", str(DEFAULT_DATA)))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs, e.g. data.batch_size=64")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.repeats < (0 if args.profile else 1) or args.profile < 0:
        parser.error("--steps must be >= 1, --warmup >= 0, --repeats >= 1 (0 only with --profile), --profile >= 0")
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    rates: dict[str, list[float]] = {"framework": [], "bare": []}
    peaks: dict[str, list[float]] = {"framework": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        check_one_epoch_holds_the_steps(compose_config(args, tmp), args)
        for repeat in range(args.repeats):
            pair = [("framework", run_framework), ("bare", run_bare)]
            for name, run in pair if repeat % 2 == 0 else pair[::-1]:  # ABBA order: drift cancels
                gc.collect()
                cfg = compose_config(args, f"{tmp}/{name}{repeat}")
                reset = reset_peak_memory(args.device)
                rate = run(cfg, args)
                rates[name].append(rate)
                mib, measured = peak_memory(args.device, reset)
                peaks[name].append(mib)
                print(f"repeat {repeat} {name:9s} {rate:8.1f} steps/s  peak memory {mib:.0f} MiB ({measured})", flush=True)
        if args.profile:
            profile_both(lambda name: compose_config(args, f"{tmp}/{name}"), args, args.profile)
    if not args.repeats:
        return
    ratios = [a / b for a, b in zip(rates["framework"], rates["bare"])]
    summary = {
        "experiment": args.experiment, "device": args.device, "precision": args.precision, "compile": args.compile,
        "bare": "eager fp32" if args.bare_eager else "same precision and compilation as the framework",
        "steps": args.steps, "clock": args.clock, "framework_steps_per_s": statistics.median(rates["framework"]),
        "bare_steps_per_s": statistics.median(rates["bare"]), "ratio_median": statistics.median(ratios),
        "ratio_of_medians": statistics.median(rates["framework"]) / statistics.median(rates["bare"]),
        "ratios": ratios, "peak_memory_mib": {name: max(values) for name, values in peaks.items()},
    }  # fmt: skip
    print(f"framework / bare = {summary['ratio_median']:.3f} (median of {args.repeats} paired ratios; ratio of median "
          f"rates {summary['ratio_of_medians']:.3f}; per repeat: "
          + ", ".join(f"{r:.3f}" for r in ratios) + ")")  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
