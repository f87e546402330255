"""Lightning's NVML CUDA probe is dropped only where NVML is absent (where it changes no answer)."""

from __future__ import annotations

import os

import gan.utils.nvml as nvml
from gan.utils.nvml import NVML_CHECK_FLAG, drop_futile_nvml_check


def test_flag_is_dropped_without_nvml_and_kept_with_it(monkeypatch):
    monkeypatch.setenv(NVML_CHECK_FLAG, "1")
    monkeypatch.setattr(nvml, "nvml_loadable", lambda: True)
    assert drop_futile_nvml_check() is False
    assert os.environ[NVML_CHECK_FLAG] == "1"

    monkeypatch.setattr(nvml, "nvml_loadable", lambda: False)
    assert drop_futile_nvml_check() is True
    assert NVML_CHECK_FLAG not in os.environ
    assert drop_futile_nvml_check() is False  # nothing left to drop


def test_cuda_availability_answer_is_the_same_with_and_without_the_flag(monkeypatch):
    import torch

    monkeypatch.setenv(NVML_CHECK_FLAG, "1")
    with_flag = torch.cuda.is_available()
    monkeypatch.delenv(NVML_CHECK_FLAG)
    assert torch.cuda.is_available() == with_flag


def test_training_drops_the_flag_at_setup_on_a_machine_without_nvml(monkeypatch):
    from tests.helpers import RandomImages, cpu_trainer, small_gan

    monkeypatch.setenv(NVML_CHECK_FLAG, "1")
    monkeypatch.setattr(nvml, "nvml_loadable", lambda: False)
    cpu_trainer(limit_train_batches=1).fit(small_gan(), RandomImages.make(n_train=16, batch_size=8))
    assert NVML_CHECK_FLAG not in os.environ
