from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import write_tiny_mnist

# Keep tests offline and quiet whatever the machine's settings.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_mnist_root(tmp_path_factory) -> Path:
    return write_tiny_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The default partition of a running SLURM cluster (scripts/slurm_cluster.sh start), or a skip in one line."""
    import shutil
    import subprocess

    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=10,
                             check=False).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        out = ""
    usable = [line.split()[0].rstrip("*") for line in out.splitlines() if line.split()[0].endswith("*")
              and line.split()[1].rstrip("*~#") in ("idle", "mixed", "allocated", "completing")]  # fmt: skip
    if not (usable and shutil.which("sbatch") and shutil.which("sacct")):
        pytest.skip("slurm: no cluster (start one with scripts/slurm_cluster.sh start)")
    return usable[0]
