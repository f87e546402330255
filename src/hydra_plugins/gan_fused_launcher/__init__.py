"""hydra/launcher=fused: the jobs of a sweep that differ only in their seed train as one fused model (gan.fused).

It lives in the `hydra_plugins` namespace because Hydra instantiates launchers from there only."""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    env_override,
    filter_overrides,
    setup_globals,
)
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger("gan")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def seed_groups(jobs: list[tuple[int, list[str]]], max_members: int) -> list[list[tuple[int, list[str]]]]:
    """Jobs whose overrides agree on everything but `seed`, in job order; a group larger than `max_members` is split
    into near-equal groups (9 jobs at most 8 a group: 5 and 4, not 8 and a lone one)."""
    groups: dict[tuple, list] = {}
    for number, overrides in jobs:
        has_seed = any(_key(o) == "seed" for o in overrides)
        key = tuple(sorted(o for o in overrides if _key(o) != "seed")) if has_seed else ("alone", number)
        groups.setdefault(key, []).append((number, overrides))
    split = []
    for group in groups.values():
        parts = -(-len(group) // max_members)
        size = -(-len(group) // parts)
        split += [group[i : i + size] for i in range(0, len(group), size)]
    return split


class FusedLauncher(BasicLauncher):
    """Hydra's local launcher, except that each group of jobs differing only in `seed` runs as one fused process.

    A group that cannot be fused (`gan.fused.NotFusable`: an objective with a D regulariser, several devices...)
    runs one job after another, after one line saying why; so does a job with no partner."""

    def __init__(self, max_members: int = 64) -> None:
        super().__init__()
        if not (type(max_members) is int and max_members >= 1):  # before any job exists: one line, exit 1
            print(f"error: hydra.launcher.max_members={max_members!r} is invalid: must be an integer >= 1 "
                  "(e.g. hydra.launcher.max_members=8)", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        self.max_members = max_members

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from gan.fused import NotFusable

        jobs = [(initial_job_idx + i, list(overrides)) for i, overrides in enumerate(job_overrides)]
        returns: dict[int, JobReturn] = {}
        for group in seed_groups(jobs, self.max_members):
            numbers = ", ".join(str(number) for number, _ in group)
            if len(group) > 1:
                try:
                    returns.update(self._launch_fused(group))
                    continue
                except NotFusable as why:
                    log.warning("jobs %s run one after another: %s", numbers, why)
            else:
                log.info("job %s runs alone: no other job of the sweep differs from it in the seed only", numbers)
            for number, overrides in group:
                returns[number] = super().launch([overrides], number)[0]
        return [returns[number] for number, _ in jobs]

    # --- one fused group: Hydra 1.3's run_job, for several jobs at once -----------------------------------------
    def _job_config(self, number: int, overrides: list[str]) -> tuple[DictConfig, DictConfig, DictConfig]:
        """The job's config, its task config (as saved in .hydra/) and the task config resolved (its folder and
        `hydra:` interpolations, while this job's Hydra config is current), as run_job prepares them; nothing is
        written yet."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = number
        folder = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = str(folder.resolve())
        HydraConfig.instance().set_config(config)
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        resolved = copy.deepcopy(task)
        OmegaConf.resolve(resolved)  # ${hydra:runtime.output_dir} and the like
        return config, task, resolved

    def _start_job(self, config: DictConfig, task: DictConfig) -> None:
        """The job's folder and .hydra/ files, as run_job writes them, and the callbacks' on_job_start."""
        HydraConfig.instance().set_config(config)
        folder = Path(config.hydra.runtime.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if config.hydra.output_subdir is not None:
            saved = folder / str(config.hydra.output_subdir)
            saved.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(task, saved / "config.yaml")
            OmegaConf.save(HydraConfig.instance().cfg, saved / "hydra.yaml")
            OmegaConf.save(config.hydra.overrides.task, saved / "overrides.yaml")
        self.hydra_context.callbacks.on_job_start(config=config, task_function=self.task_function)

    def _launch_fused(self, group: list[tuple[int, list[str]]]) -> dict[int, JobReturn]:
        from gan.errors import GANError
        from gan.fused import NotFusable
        from gan.fused.train import FusedGroup, group_folder
        from gan.utils.run import user_errors_reported

        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        numbers = [number for number, _ in group]
        configs = [self._job_config(number, overrides) for number, overrides in group]
        if any(config.hydra.job.chdir for config, _, _ in configs):
            raise NotFusable("hydra.job.chdir=true gives each job its own working directory, which one process cannot")
        folder = group_folder(sweep_dir, numbers, [overrides for _, overrides in group])
        try:  # NotFusable (raised on to launch) comes here, before any file is written
            fused = FusedGroup([resolved for _, _, resolved in configs], numbers, folder)
        except NotFusable:
            raise
        except GANError as error:
            fused, results = None, [error] * len(group)  # a config error of the jobs: each reports it
        for number, overrides in group:
            log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
        for config, task, _ in configs:
            self._start_job(config, task)
        configure_log(configs[0][0].hydra.job_logging, configs[0][0].hydra.verbose)
        extra_logs = _log_to_every_folder([config for config, _, _ in configs])
        try:
            if fused is not None:
                with env_override(configs[0][0].hydra.job.env_set):  # the jobs differ in their seed only
                    results = fused.run()
        except Exception as error:  # the group's failure is every member's (a GANError in one line, a bug in full)
            results = [error] * len(group)
        finally:
            for handler in extra_logs:
                logging.getLogger().removeHandler(handler)
                handler.close()
        returns = {}
        for (number, overrides), (config, task, resolved), result in zip(group, configs, results):
            HydraConfig.instance().set_config(config)
            job = JobReturn(overrides=overrides, cfg=task, hydra_cfg=copy.deepcopy(HydraConfig.instance().cfg),
                            working_dir=os.getcwd(), task_name=str(config.hydra.job.name), status=JobStatus.COMPLETED)  # fmt: skip
            if isinstance(result, GANError):
                with user_errors_reported():  # one line, FAILED in the job's folder, the sweep goes on
                    raise result
                job.return_value = None
            elif isinstance(result, Exception):
                job.status, job.return_value = JobStatus.FAILED, result
            else:
                job.return_value = result.get(resolved.get("optimized_metric"))
            self.hydra_context.callbacks.on_job_end(config=config, job_return=job)
            returns[number] = job
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns


def _log_to_every_folder(configs: list[DictConfig]) -> list[logging.Handler]:
    """The group's log goes to every member's log file (Hydra's job logging names one folder: the first's)."""
    root = logging.getLogger()
    first = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    if first is None:
        return []
    handlers = []
    for config in configs[1:]:
        handler = logging.FileHandler(Path(config.hydra.runtime.output_dir) / Path(first.baseFilename).name)
        handler.setFormatter(first.formatter)
        handler.setLevel(first.level)
        handler.filters = list(first.filters)  # the project's (one line per record, no tips)
        root.addHandler(handler)
        handlers.append(handler)
    return handlers
