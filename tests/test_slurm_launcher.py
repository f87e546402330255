"""The SLURM launcher's requests fitted to the cluster before submission (no cluster needed): GPUs follow the
accelerator, requests no node can meet are lowered, a timeout signal fits in the time limit."""

from __future__ import annotations

import pytest

from gan.utils.cluster import Node, fit_signal_delay, fit_to_partition, parse_sinfo
from tests.helpers import compose_train

SMALL_NODE = Node(cpus=2, mem_mb=24105, gpus=0, max_minutes=None)


def _launcher(**overrides) -> dict:
    args = ["hydra/launcher=slurm", "paths.output_dir=/tmp", *overrides.pop("args", [])]
    cfg = compose_train(args, return_hydra=True)
    params = {key: cfg.hydra.launcher[key] for key in ("partition", "timeout_min", "tasks_per_node", "gpus_per_node",
                                                       "cpus_per_task", "mem_gb", "signal_delay_s")}  # fmt: skip
    return {**params, **overrides}


@pytest.mark.parametrize(("trainer", "gpus"), [("cpu", 0), ("ddp_cpu", 0), ("gpu", 1), ("ddp", 4), ("default", 1)])
def test_gpus_per_node_follows_the_accelerator(trainer, gpus):
    assert _launcher(args=[f"trainer={trainer}"])["gpus_per_node"] == gpus
    assert _launcher(args=[f"trainer={trainer}", "hydra.launcher.gpus_per_node=2"])["gpus_per_node"] == 2


def test_requests_no_node_can_meet_are_lowered_to_the_largest_node_in_one_warning_line_each():
    params = _launcher(args=["trainer=ddp_cpu"])  # 2 tasks x 8 CPUs, 64 GB
    warnings = fit_to_partition(params, "cpu", [SMALL_NODE, Node(1, 4000, 0, None)])
    assert (params["cpus_per_task"], params["mem_gb"], params["gpus_per_node"]) == (1, 23, 0)
    assert warnings == [
        ("hydra.launcher.cpus_per_task=8 x 2 task(s) exceeds every node of partition (default) (2 CPUs): asking for 1; "
         "set hydra.launcher.cpus_per_task to silence this"),
        ("hydra.launcher.mem_gb=64 exceeds every node of partition (default) (23 GB): asking for 23; set "
         "hydra.launcher.mem_gb to silence this"),
    ]
    fitting = {**params}
    assert fit_to_partition(fitting, "cpu", [SMALL_NODE]) == [] and fitting == params  # what fits is left alone
    big = _launcher(args=["trainer=gpu", "hydra.launcher.timeout_min=4000"])
    warnings = fit_to_partition(big, "gpu", [Node(64, 512_000, 8, 2880)])
    assert big["timeout_min"] == 2880 and len(warnings) == 1 and "requeued at the limit" in warnings[0]


def test_a_gpu_job_on_a_partition_without_gpus_is_refused_in_one_line_and_auto_trains_on_the_cpu(capsys):
    with pytest.raises(SystemExit) as refused:
        fit_to_partition(_launcher(args=["trainer=gpu"]), "gpu", [SMALL_NODE])
    assert refused.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: hydra.launcher.gpus_per_node=1")
    assert "Fix: trainer=cpu" in err
    params = _launcher(args=["trainer=default"])  # accelerator=auto
    (warning,) = fit_to_partition(params, "auto", [SMALL_NODE, SMALL_NODE])[:1]
    assert params["gpus_per_node"] == 0 and "has no GPUs" in warning
    with pytest.raises(SystemExit):
        fit_to_partition(_launcher(partition="nope"), "cpu", [])
    assert "sinfo lists no nodes in partition nope" in capsys.readouterr().err


def test_a_timeout_signal_at_or_past_the_time_limit_is_moved_to_half_the_limit():
    params = _launcher(args=["hydra.launcher.timeout_min=1"])  # signal_delay_s=120 by default
    assert fit_signal_delay(params) == [("hydra.launcher.signal_delay_s=120 is not shorter than the time limit "
                                         "(timeout_min=1, 60 s): using 30 s (half the limit)")]  # fmt: skip
    assert params["signal_delay_s"] == 30
    assert fit_signal_delay(params) == [] and params["signal_delay_s"] == 30


def test_sinfo_output_is_read_per_partition():
    out = ("gpu|64|512000|gpu:a100:8(S:0-1)|2-00:00:00\ndebug*|2|24105|(null)|infinite\n"
           "gpu|32|256000|gpu:4,tmp:1|1:30:00\n")
    assert parse_sinfo(out, None) == [Node(2, 24105, 0, None)]
    assert parse_sinfo(out, "gpu") == [Node(64, 512000, 8, 2880), Node(32, 256000, 4, 90)]
    assert parse_sinfo(out, "other") == []
