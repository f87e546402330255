"""`gan-train -m hydra/launcher=slurm` on a real SLURM cluster (scripts/slurm_cluster.sh start): a CPU job with the
launcher's defaults, a job array, `scontrol requeue` mid-epoch, a timeout requeue, a 2-task DDP job. A resumed job
ends with the weights of an uninterrupted one, having redone at most one training step per interruption."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]
# one thread everywhere, so a job's numbers do not depend on the CPUs SLURM gives it; sbatch passes the environment on
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1",
       "HYDRA_FULL_ERROR": "0"}  # fmt: skip
BATCHES = 40  # 2 epochs of 20 batches
SMALL_JOB = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]  # two jobs side by side on a 2-CPU node


def _training(root: Path, *extra: str) -> list[str]:
    return ["debug=fast", *tiny_data_overrides(root), "data.batch_size=20", "trainer.max_epochs=2",
            "trainer.limit_train_batches=1.0", "trainer.deterministic=true", "trainer.log_every_n_steps=1",
            "test=false", "callbacks.model_checkpoint.monitor=null", *extra]  # fmt: skip


def _paced(progress: Path, seconds: float) -> list[str]:
    return ["+callbacks.pace._target_=tests.fault_injection.PaceAndReport", f"+callbacks.pace.path={progress}",
            f"+callbacks.pace.seconds={seconds}"]  # fmt: skip


class Sweep:
    """`gan-train -m hydra/launcher=slurm ...` running in the background, as a user starts it."""

    def __init__(self, sweep: Path, *overrides: str) -> None:
        self.dir = sweep
        script = Path(sys.executable).parent / "gan-train"
        self.process = subprocess.Popen(
            [str(script), "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep}", *overrides], cwd=sweep.parent,
            env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def job_id(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = sorted(p.name for p in (self.dir / ".submitit").glob("*") if p.is_dir())
            if jobs:
                return jobs[0].split("_")[0]
            self._check_running()
            time.sleep(0.5)
        raise AssertionError(f"no job submitted in {timeout}s:\n{self.finish(timeout=5)}")

    def wait_for_batches(self, progress: Path, batches: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if int(progress.read_text()) >= batches:
                    return
            self._check_running()
            time.sleep(0.2)
        raise AssertionError(f"the job did not reach batch {batches} in {timeout}s")

    def _check_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"gan-train ended early:\n{self.process.stdout.read()[-3000:]}")

    def finish(self, timeout: float = 600) -> str:
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
            raise AssertionError(f"the sweep did not finish in {timeout}s:\n{out[-3000:]}") from None
        assert self.process.returncode == 0, out[-3000:]
        return out


@contextlib.contextmanager
def requeued_jobs_released(time_limits: dict[str, int]):
    """A requeued job waits before it is eligible again (SLURM's credential lifetime): start it at once, with its
    time limit (minutes) set back to `time_limits[job]` where given."""
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(1.0):
            pending = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i %r"], capture_output=True,
                                     text=True, check=False).stdout.split("\n")  # fmt: skip
            for job, reason in (line.split(maxsplit=1) for line in pending if line.strip()):
                if reason.startswith("BeginTime"):
                    limit = [f"TimeLimit={time_limits[job]}"] if job in time_limits else []
                    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now", *limit],
                                   capture_output=True, check=False)  # fmt: skip

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _batches(progress: Path) -> int:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(progress.read_text())
    return 0


def _cut_time_limit(job: str) -> None:
    """Leave the job 60-120 s: SLURM sends the timeout signal (signal_delay_s=120 before the limit) at its next
    time check, within 30 s, and the job has time to write its checkpoint before the limit."""
    elapsed = subprocess.run(["squeue", "-h", "-j", job, "-o", "%M"], capture_output=True, text=True,
                             check=True).stdout.strip()
    seconds = sum(int(x) * 60**i for i, x in enumerate(reversed(elapsed.replace("-", ":").split(":"))))
    subprocess.run(["scontrol", "update", f"jobid={job}", f"TimeLimit={math.ceil(seconds / 60) + 1}"], check=True)


def _attempts(job: str, timeout: float = 60) -> list[str]:
    """The final states of every run of a job (of each job of an array): REQUEUED for each interrupted run, then
    COMPLETED. The launcher returns when a job has written its result, a moment before SLURM records its end."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-j", job, "-D", "-X", "-n", "-P", "-o", "State"], capture_output=True,
                             text=True, check=False).stdout.split()  # fmt: skip
        if not {"RUNNING", "COMPLETING", "PENDING"} & set(out) or time.monotonic() > deadline:
            return out
        time.sleep(1)


def _steps_logged(run: Path) -> list[int]:
    with open(run / "csv" / "metrics.csv", newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get("train/d_loss")]


def _state_dict(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _assert_same_weights(expected: Path, actual: Path) -> None:
    a, b = _state_dict(expected), _state_dict(actual)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _assert_resumed_exactly(run: Path, reference: Path, interruptions: int) -> None:
    steps = _steps_logged(run)
    assert sorted(set(steps)) == list(range(BATCHES)), "a training step is missing from the log"
    assert len(steps) - BATCHES <= interruptions, f"{len(steps) - BATCHES} steps redone"
    _assert_same_weights(reference, run)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["gan_counters"]["batches_seen"] == BATCHES


@pytest.fixture(scope="module")
def jobs(slurm_cluster, tiny_mnist_root, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Four one-CPU jobs, two at a time on a 2-CPU node: a 2-job array (seed=1234,1; job 0 is the uninterrupted run
    that the resumed jobs must repeat), a job requeued with `scontrol requeue` in its second epoch (SIGTERM), and a
    job that reaches its time limit mid-epoch (SIGUSR2 from SLURM, signal_delay_s before the limit, which
    submitit answers by requeueing). The time limit is cut short once the job has trained 5 batches, and set back
    for the requeued run."""
    root = tmp_path_factory.mktemp("slurm")
    training = [*_training(tiny_mnist_root), *SMALL_JOB]
    sweeps = {
        "requeue": Sweep(root / "requeue", *training, *_paced(root / "requeue.progress", 0.3)),
        "timeout": Sweep(root / "timeout", *training, *_paced(root / "timeout.progress", 1.5),
                         "hydra.launcher.timeout_min=10", "hydra.launcher.max_num_timeout=3"),
        "array": Sweep(root / "array", *training, "seed=1234,1"),
    }  # fmt: skip
    ids = {name: sweep.job_id() for name, sweep in sweeps.items()}
    with requeued_jobs_released({ids["timeout"]: 10}):
        interrupt = {"requeue": (25, lambda: subprocess.run(["scontrol", "requeue", ids["requeue"]], check=True)),
                     "timeout": (5, lambda: _cut_time_limit(ids["timeout"]))}  # fmt: skip
        deadline = time.monotonic() + 600
        while interrupt:
            for name, (batches, action) in list(interrupt.items()):
                sweeps[name]._check_running()
                if _batches(root / f"{name}.progress") >= batches:
                    action()
                    del interrupt[name]
            assert time.monotonic() < deadline, f"{list(interrupt)} did not reach the batch to interrupt"
            time.sleep(0.2)
        outputs = {name: sweep.finish() for name, sweep in sweeps.items()}
    assert all(outputs)
    return {name: (sweep.dir, ids[name]) for name, sweep in sweeps.items()}


@pytest.mark.slurm
def test_a_job_array_runs_every_job_to_the_end(jobs):
    sweep, job = jobs["array"]
    assert list((sweep / ".submitit").glob(f"{job}_1")), "not submitted as an array"
    assert _attempts(job) == ["COMPLETED", "COMPLETED"]
    first, second = _state_dict(sweep / "0"), _state_dict(sweep / "1")
    assert any(not torch.equal(first[name], second[name]) for name in first)  # two seeds, two runs
    for run in (sweep / "0", sweep / "1"):
        assert sorted(set(_steps_logged(run))) == list(range(BATCHES))


@pytest.mark.slurm
def test_scontrol_requeue_mid_epoch_resumes_exactly(jobs):
    """SIGTERM from `scontrol requeue`: last.ckpt at the next batch end, SLURM requeues, the job goes on from it."""
    sweep, job = jobs["requeue"]
    run = sweep / "0"
    assert _attempts(job) == ["REQUEUED", "COMPLETED"]
    assert "SIGTERM: saved" in (run / "debug.log").read_text()
    _assert_resumed_exactly(run, jobs["array"][0] / "0", interruptions=1)


@pytest.mark.slurm
def test_timeout_requeue_resumes_exactly(jobs):
    """SIGUSR2 before the time limit: last.ckpt at the next batch end, then submitit's handler requeues the job."""
    sweep, job = jobs["timeout"]
    run = sweep / "0"
    assert _attempts(job) == ["REQUEUED", "COMPLETED"]
    submitit_log = next((sweep / ".submitit").glob("*/*_0_log.err")).read_text()
    assert "Caught signal SIGUSR2" in submitit_log and "timed-out" in submitit_log
    assert "SIGUSR2: saved" in (run / "debug.log").read_text()
    _assert_resumed_exactly(run, jobs["array"][0] / "0", interruptions=1)


@pytest.mark.slurm
def test_a_cpu_job_with_the_launcher_defaults_fits_the_node(slurm_cluster, tiny_mnist_root, tmp_path):
    """gpus_per_node follows trainer.accelerator (no gres error); cpus_per_task=8 and mem_gb=64 are lowered to what
    the node has, each in one warning line (no silent PENDING)."""
    sweep = Sweep(tmp_path / "defaults", *_training(tiny_mnist_root, "trainer.max_epochs=1",
                                                     "trainer.limit_train_batches=3"), "trainer=cpu")  # fmt: skip
    job = sweep.job_id()
    out = sweep.finish()
    assert "hydra.launcher.cpus_per_task=8 x 1 task(s) exceeds every node of partition (default)" in out
    assert "hydra.launcher.mem_gb=64 exceeds every node of partition (default)" in out
    script = next((sweep.dir / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "--gpus-per-node=0" in script and "--cpus-per-task=8" not in script
    assert _attempts(job) == ["COMPLETED"]
    assert (sweep.dir / "0" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slurm
def test_a_two_task_ddp_job_trains_the_same_weights_on_both_ranks(slurm_cluster, tiny_mnist_root, tmp_path):
    """trainer=ddp_cpu: SLURM starts the two ranks (srun, one task each), Lightning joins them with gloo."""
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    short = _training(tiny_mnist_root, "trainer.max_epochs=1", "trainer.limit_train_batches=4")
    sweep = Sweep(tmp_path / "ddp", *short,
                  "trainer=ddp_cpu", "+callbacks.ranks._target_=tests.fault_injection.SaveRankState",
                  f"+callbacks.ranks.dirpath={ranks}")  # fmt: skip
    job = sweep.job_id()
    out = sweep.finish()
    assert "cpus_per_task=8 x 2 task(s) exceeds every node" in out
    assert _attempts(job) == ["COMPLETED"]
    rank0, rank1 = (torch.load(ranks / f"rank{r}_end.pt") for r in (0, 1))
    start0 = torch.load(ranks / "rank0_start.pt")
    for name, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][name]), name
    assert any(not torch.equal(value, start0["state"][name]) for name, value in rank0["state"].items())
    # each rank is its own SLURM task with its own log (Lightning's records go to the task's stdout)
    logs = sorted((sweep.dir / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all("MEMBER: " in log.read_text() for log in logs)
