"""The Parzen protocol on a saved checkpoint, in one process, repeating the numbers its run computed.

Used by scripts/parzen_selection.py (how well the validation estimate picks checkpoints) and
scripts/time_to_parzen.py (when a run first reached a target).
"""

from __future__ import annotations

from pathlib import Path

import torch

from gan.callbacks.parzen import ParzenLogLikelihood, draw_samples
from gan.errors import ConfigError
from gan.metrics.parzen import ParzenResult
from gan.utils.checkpoints import model_and_data_from_checkpoint


class CheckpointParzen:
    """A checkpoint's model and data with its run's own `parzen` settings and seed (the EMA generator where the
    run kept one). The samples do not depend on the number of processes, so `test()` is what gan-train's test
    stage and `gan-eval` report for it on any number of them. `device` only changes where the work runs."""

    def __init__(self, path: str | Path, data_root: str | None = None, device: str | torch.device = "cpu") -> None:
        self.model, self.data, stored = model_and_data_from_checkpoint(path, data_root)
        settings = (stored.get("callbacks") or {}).get("parzen")
        if not settings:
            raise ConfigError(f"{path} comes from a run without the parzen callback, so it has no Parzen settings to "
                              "repeat. Fix: score it with gan-eval ckpt_path=... instead")  # fmt: skip
        self.parzen = ParzenLogLikelihood(**{key: value for key, value in settings.items() if key != "_target_"})
        self.device = torch.device(device)
        self.model.to(self.device)
        self.data.setup()
        self._drawn: dict[int, torch.Tensor] = {}

    def samples(self, n: int) -> torch.Tensor:
        if n not in self._drawn:
            self._drawn[n] = draw_samples(self.model, n, self.parzen.seed, self.parzen.sample_batch_size)
        return self._drawn[n]

    def validation(self, n_samples: int) -> ParzenResult:
        """val/parzen_ll as the run's `parzen` callback computes it, with `n_samples` samples."""
        return self._score(n_samples, self.parzen.validation_sets(self.data))

    def test(self) -> ParzenResult:
        """The full protocol of the run's test stage."""
        return self._score(self.parzen.test_samples, self.parzen.test_sets(self.data))

    def _score(self, n_samples: int, sets: tuple[torch.Tensor, torch.Tensor]) -> ParzenResult:
        select, score = (images.to(self.device) for images in sets)
        return self.parzen.score(self.data, self.samples(n_samples), select, score)
