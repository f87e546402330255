"""Cluster-specific trainer plugins."""

from __future__ import annotations

import os

from lightning.pytorch.plugins.environments import SLURMEnvironment


def cluster_plugins() -> list:
    """Inside a submitit SLURM job, submitit owns requeueing (it checkpoints and requeues on timeout or
    preemption), so Lightning's own SIGUSR1 auto-requeue is switched off: exactly one of them requeues."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    return []
