"""The SLURM launcher of conf/hydra/launcher/slurm.yaml: hydra-submitit-launcher's, fitted to the cluster first.

It lives in the `hydra_plugins` namespace because Hydra instantiates launchers from there only."""

from __future__ import annotations

import logging

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import OmegaConf

from gan.utils.cluster import fit_signal_delay, fit_to_partition, partition_nodes

log = logging.getLogger("gan")


class SlurmLauncher(SubmititSlurmLauncher):
    """Before submitting, requests that would leave the jobs PENDING forever (more CPUs, memory, time or GPUs than
    any node of the partition has, as sinfo reports them) and a timeout signal that would come as the job starts
    are adjusted, each change named in one warning line; a GPU job on a partition without GPUs is refused in one
    line. Without sinfo the jobs are submitted as configured."""

    def launch(self, job_overrides, initial_job_idx):
        accelerator = OmegaConf.select(self.config, "trainer.accelerator", default="auto")
        nodes = partition_nodes(self.params.get("partition"))
        warnings = fit_to_partition(self.params, accelerator, nodes) if nodes is not None else []
        warnings += fit_signal_delay(self.params)  # after the time limit is fitted: the delay must fit in it
        for warning in warnings:
            log.warning(warning)
        return super().launch(job_overrides, initial_job_idx)
