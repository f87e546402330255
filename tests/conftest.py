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
