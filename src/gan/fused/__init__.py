"""Fused multi-seed training: jobs that differ only in their seed, trained as one vectorised model on one device
(`gan-train -m seed=1,2,3 hydra/launcher=fused`; docs/fused.md)."""

from gan.errors import ConfigError


class NotFusable(ConfigError):
    """These jobs cannot train as one fused model; the launcher runs them one after another instead."""
