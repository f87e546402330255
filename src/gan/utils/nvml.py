"""Lightning's NVML-based CUDA probe, dropped on machines without NVML where it only costs time."""

from __future__ import annotations

import ctypes
import os

NVML_CHECK_FLAG = "PYTORCH_NVML_BASED_CUDA_CHECK"


def nvml_loadable() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def drop_futile_nvml_check() -> bool:
    """Unsets PYTORCH_NVML_BASED_CUDA_CHECK when NVML cannot be loaded; returns whether it did.

    Lightning sets the flag at import so that asking whether CUDA is there never initialises it (fork
    safety). torch's Adam asks on every `step()`; with the flag set, each ask dlopens libnvidia-ml, and where
    there is no NVML (CPU machines) that failed dlopen costs ~0.3 ms per optimizer step before torch falls
    back to the CUDA runtime's count, which is exactly what it asks without the flag. So without NVML the
    flag changes no answer and only costs time.
    """
    if os.environ.get(NVML_CHECK_FLAG) != "1" or nvml_loadable():
        return False
    del os.environ[NVML_CHECK_FLAG]
    return True
