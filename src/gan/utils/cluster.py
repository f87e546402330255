"""SLURM: the launcher's requests checked against the cluster at submission, and who owns requeueing in a job.

Imported by `gan/__init__.py` for its config resolver, so it loads nothing heavy at import time (the launcher
itself is hydra_plugins.gan_slurm_launcher).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from omegaconf import OmegaConf

log = logging.getLogger("gan")


def gpus_per_node(accelerator: str, devices) -> int | None:
    """`${gan.gpus_per_node:${trainer.accelerator},${trainer.devices}}`: a CPU job asks SLURM for no GPU (asking
    for one makes sbatch refuse the job with "Invalid generic resource (gres) specification" on a CPU-only cluster,
    or leaves it waiting for a GPU it will not use); other jobs ask for one GPU per device. `auto` counts as a GPU
    job here; at submission it asks for none where the partition has no GPUs (SlurmLauncher)."""
    if str(accelerator).lower() == "cpu":
        return 0
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices)
    return None  # devices=-1/auto: the number of GPUs is the node's; set hydra.launcher.gpus_per_node yourself


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("gan.gpus_per_node"):
        OmegaConf.register_new_resolver("gan.gpus_per_node", gpus_per_node)


def register_launchers() -> None:
    """Hydra instantiates only the launchers it found by walking the `hydra_plugins` namespace, which it cannot walk
    where this package is installed in editable mode (pip install -e): register ours (slurm, fused) by hand."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.gan_fused_launcher import FusedLauncher
    from hydra_plugins.gan_slurm_launcher import SlurmLauncher

    Plugins.instance().register(SlurmLauncher)
    Plugins.instance().register(FusedLauncher)


def cluster_plugins() -> list:
    """Inside a submitit SLURM job, submitit owns requeueing (on SIGUSR2 before the time limit it resubmits the
    job; gan.callbacks.PreemptionCheckpoint saves a checkpoint first), so Lightning's own SIGUSR1 auto-requeue is
    switched off: exactly one of them requeues."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    return []


# --- the requests checked against the partition's nodes, at submission -------------------------------------------
@dataclass(frozen=True)
class Node:
    cpus: int
    mem_mb: int
    gpus: int
    max_minutes: int | None  # the partition's time limit; None: unlimited


def _minutes(limit: str) -> int | None:
    """sinfo's time limit ([days-]hours:minutes:seconds, or `infinite`) in whole minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def _gpus(gres: str) -> int:
    """GPUs in sinfo's GRES column, e.g. `gpu:4`, `gpu:a100:8(S:0-1)`, `(null)`."""
    total = 0
    for item in gres.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def partition_nodes(partition: str | None) -> list[Node] | None:
    """The nodes of `partition` (the default partition if None) as sinfo reports them, or None where sinfo is
    missing or does not answer (the job is then submitted unchecked)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%l"], capture_output=True, text=True,
                             timeout=20, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_sinfo(out, partition)


def parse_sinfo(out: str, partition: str | None) -> list[Node]:
    """`sinfo -h -N -o %P|%c|%m|%G|%l` lines (one per node and partition; the default partition ends in `*`)."""
    nodes = []
    for line in out.splitlines():
        if line.count("|") != 4:
            continue
        name, cpus, mem, gres, limit = line.strip().split("|")
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            nodes.append(Node(int(cpus.rstrip("+")), int(mem.rstrip("+")), _gpus(gres), _minutes(limit)))
    return nodes


def fit_to_partition(params: dict, accelerator: str, nodes: list[Node]) -> list[str]:
    """Adjust the requests in `params` (the launcher's settings) that no node of the partition can meet, which
    would leave the job PENDING forever, and return one warning line per change. A GPU job on a partition without
    GPUs exits with one line: it cannot run there."""
    key = "hydra.launcher."
    warnings: list[str] = []
    where = f"partition {params.get('partition') or '(default)'}"
    if not nodes:
        _refuse(f"sinfo lists no nodes in {where}. Fix: {key}partition=<one of the partitions sinfo lists>")
    gpus = params.get("gpus_per_node") or 0
    most_gpus = max(node.gpus for node in nodes)
    if gpus > most_gpus:
        if str(accelerator).lower() == "auto" and most_gpus == 0:
            params["gpus_per_node"] = 0
            warnings.append(f"{where} has no GPUs: {key}gpus_per_node={gpus} -> 0 (trainer.accelerator=auto will "
                            "train on the CPU; trainer=cpu says so and silences this)")  # fmt: skip
        else:
            _refuse(f"{key}gpus_per_node={gpus} (trainer.devices) but the nodes of {where} have at most {most_gpus} "
                    f"GPUs. Fix: trainer=cpu, fewer trainer.devices, or a GPU {key}partition=...")  # fmt: skip
    gpus = params.get("gpus_per_node") or 0
    fitting = [node for node in nodes if node.gpus >= gpus] or nodes
    tasks = params.get("tasks_per_node") or 1
    cpus = params.get("cpus_per_task")
    most_cpus = max(node.cpus for node in fitting)
    if cpus and cpus * tasks > most_cpus:
        params["cpus_per_task"] = max(1, most_cpus // tasks)
        warnings.append(f"{key}cpus_per_task={cpus} x {tasks} task(s) exceeds every node of {where} ({most_cpus} CPUs):"
                        f" asking for {params['cpus_per_task']}; set {key}cpus_per_task to silence this")  # fmt: skip
    mem_gb = params.get("mem_gb")
    most_gb = max(node.mem_mb for node in fitting) // 1024
    if mem_gb and mem_gb > most_gb:
        params["mem_gb"] = most_gb
        warnings.append(f"{key}mem_gb={mem_gb} exceeds every node of {where} ({most_gb} GB): asking for {most_gb}; "
                        f"set {key}mem_gb to silence this")  # fmt: skip
    limits = [node.max_minutes for node in fitting]
    timeout = params.get("timeout_min")
    if timeout and None not in limits and timeout > max(limits):
        params["timeout_min"] = max(limits)
        warnings.append(f"{key}timeout_min={timeout} exceeds the time limit of {where} ({max(limits)} min): asking "
                        f"for {max(limits)} (the job is requeued at the limit and resumes)")  # fmt: skip
    return warnings


def fit_signal_delay(params: dict) -> list[str]:
    """submitit's timeout signal (SIGUSR2) comes `signal_delay_s` before the time limit: at or past the limit's
    length it would arrive as the job starts, and every attempt would be requeued without progress."""
    delay, timeout = params.get("signal_delay_s"), params.get("timeout_min")
    if delay is None or not timeout or delay < timeout * 60:
        return []
    params["signal_delay_s"] = timeout * 30
    return [(f"hydra.launcher.signal_delay_s={delay} is not shorter than the time limit (timeout_min={timeout}, "
             f"{timeout * 60} s): using {timeout * 30} s (half the limit)")]  # fmt: skip


def _refuse(message: str) -> None:  # the house style for bad input before any job exists (as gan.utils.run)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
