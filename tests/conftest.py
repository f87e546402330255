from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_cli, tiny_data_overrides, write_image_folder, write_tiny_mnist

# Keep tests offline and quiet whatever the machine's settings.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_mnist_root(tmp_path_factory) -> Path:
    return write_tiny_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def fast_run(tiny_mnist_root, tmp_path_factory) -> Path:
    """The folder of one `gan-train debug=fast test=false` on tiny_mnist_root, for the tests that only read it
    (its checkpoint, figures, metrics.json): one training for all of them."""
    run_dir = tmp_path_factory.mktemp("fast_run") / "run"
    result = run_cli("gan-train", "debug=fast", "test=false", f"hydra.run.dir={run_dir}",
                     *tiny_data_overrides(tiny_mnist_root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """300 16x16 RGB PNGs in three class subfolders (write_image_folder); read-only."""
    return write_image_folder(tmp_path_factory.mktemp("images"))


NO_SLURM = "slurm: no cluster (start one with scripts/slurm_cluster.sh start)"


@functools.cache
def _slurm_partition() -> str | None:
    """The default partition of a running SLURM cluster, None without one (sinfo missing or not answering)."""
    if not (shutil.which("sinfo") and shutil.which("sbatch") and shutil.which("sacct")):
        return None
    try:  # a controller that is down makes sinfo retry for ~10 s; a running one answers at once
        out = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=5,
                             check=False).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    usable = [line.split()[0].rstrip("*") for line in out.splitlines() if line.split()[0].endswith("*")
              and line.split()[1].rstrip("*~#") in ("idle", "mixed", "allocated", "completing")]  # fmt: skip
    return usable[0] if usable else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Without a cluster, every `slurm` test skips from the same place, so the summary folds them into one line
    (pytest reports a skip at each test's own line otherwise)."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(NO_SLURM):
        report.longrepr = (__file__, None, report.longrepr[2])
    return report


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The default partition of the running SLURM cluster (scripts/slurm_cluster.sh start)."""
    partition = _slurm_partition()
    if partition is None:
        pytest.skip(NO_SLURM)
    return partition
