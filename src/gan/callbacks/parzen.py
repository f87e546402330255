"""The paper's Parzen-window log-likelihood as a callback: an estimate at validation that picks checkpoints,
the full protocol at test time, the same number on one process and under DDP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning import Callback, LightningModule, Trainer

from gan.data.scaling import is_invertible
from gan.errors import ConfigError, DivergenceError
from gan.metrics.parzen import DEFAULT_SIGMAS, ParzenResult, parzen_protocol, validate_inputs


def noise_batches(pl_module: LightningModule, n: int, seed: int, batch_size: int) -> list[torch.Tensor]:
    """The noise of the n evaluation samples, in batches of `batch_size`: one CPU generator seeded from `seed`
    alone, so the samples are the same on any number of processes. The seed's scaling is the stream
    single-process runs always used, so their recorded numbers stand."""
    generator = torch.Generator().manual_seed(seed * 1_000_003)
    return [pl_module.noise(min(batch_size, n - start), generator=generator) for start in range(0, n, batch_size)]


def draw_samples(pl_module: LightningModule, n: int, seed: int, batch_size: int) -> torch.Tensor:
    """The n evaluation samples in one process: what gather_samples returns on any number of them."""
    return torch.cat([pl_module.sample(len(z), noise=z).float() for z in noise_batches(pl_module, n, seed, batch_size)])


def gather_samples(trainer: Trainer, pl_module: LightningModule, n: int, seed: int, batch_size: int) -> torch.Tensor:
    """draw_samples' n samples on every rank, each rank generating a contiguous run of the batches.

    Every rank draws all the noise (cheap) and runs G on its own batches only; whole batches go to ranks, so
    each sample comes out of the same G call whatever the number of processes. all_gather needs one shape on
    every rank: the shares are padded to the largest, and the padding trimmed after the gather.
    """
    world, rank = trainer.world_size, trainer.global_rank
    if world == 1:
        return draw_samples(pl_module, n, seed, batch_size)
    batches = noise_batches(pl_module, n, seed, batch_size)
    per_rank = -(-len(batches) // world)
    mine = batches[rank * per_rank : (rank + 1) * per_rank]
    if mine:
        local = torch.cat([pl_module.sample(len(z), noise=z).float() for z in mine])
    else:  # more processes than batches: no samples here, but their shape for the padding
        local = pl_module.sample(1, noise=batches[0][:1]).float()[:0]
    padding = local.new_zeros(per_rank * len(batches[0]) - len(local), *local.shape[1:])
    # Only the last share can be short, so the padding all lies past sample n once the shares are stacked.
    return pl_module.all_gather(torch.cat([local, padding])).flatten(0, 1)[:n]


class ParzenLogLikelihood(Callback):
    """Logs `val/parzen_ll` at every validation and `test/parzen_ll`, `test/parzen_se`, `test/parzen_sigma`.

    Validation (for model selection): `val_samples` centres; sigma picked on the first `select_points` validation images,
    the log-likelihood reported on the next `val_points` (null: all the rest; never on the test set, so it can
    pick models). A validation split too small for them is refused when fitting starts, not after an epoch.
    Test (the paper's protocol): `test_samples` centres, sigma on the first `test_select_points` validation
    images (MNIST: 1,000; null: the whole validation split, as for TFD), the whole test set (or its first
    `test_points`).
    Pixels are compared in [0, 1] whenever the data scaling is invertible (unit, symmetric).
    The samples depend on `seed` (the run's) alone, not on the number of processes, so a run resumed on
    another number of them, and gan-eval on any, compute the same numbers (to float rounding).
    """

    def __init__(
        self,
        val_samples: int = 10000,
        val_points: int | None = 1000,
        select_points: int = 1000,
        test_samples: int = 10000,
        test_points: int | None = None,
        test_select_points: int | None = 1000,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        seed: int = 0,
        sample_batch_size: int = 1000,
    ) -> None:
        self.val_samples, self.val_points, self.select_points = val_samples, val_points, select_points
        self.test_samples, self.test_points, self.test_select_points = test_samples, test_points, test_select_points
        self.sigmas, self.seed, self.sample_batch_size = [float(s) for s in sigmas], seed, sample_batch_size
        self.last_result: ParzenResult | None = None

    # --- the protocol, usable without a Trainer (scripts/parzen_selection.py) ---------------------------------
    def validation_sets(self, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation images sigma is picked on, and those the estimate is reported on."""
        val = datamodule.images("val")
        end = self.select_points + self.val_points if self.val_points else None
        select, score = val[: self.select_points], val[self.select_points : end]
        if len(score) == 0 or len(score) < (self.val_points or 0):
            fitting = max(1, len(val) // 2)
            raise ConfigError(
                f"the validation split has {len(val)} images, too few for callbacks.parzen.select_points="
                f"{self.select_points} plus val_points={self.val_points or 'null (the rest)'}. Fix: "
                f"callbacks.parzen.select_points={fitting} callbacks.parzen.val_points=null (the rest), or a larger "
                "validation split (MNIST: data.val_size)"
            )
        return select, score

    def test_sets(self, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
        test = datamodule.images("test")
        return datamodule.images("val")[: self.test_select_points], test[: self.test_points] if self.test_points else test

    def score(self, datamodule, centres: torch.Tensor, select: torch.Tensor, score: torch.Tensor, rank: int = 0,
              world: int = 1, reduce_sum=lambda t: t) -> ParzenResult:  # fmt: skip
        """The protocol on generator samples `centres`, in pixels ([0, 1] when the data scaling is invertible).
        Under DDP each rank passes the same centres and the whole sets, and scores its slice of the points."""
        as_pixels = datamodule.to_unit_range if is_invertible(datamodule.scaling) else (lambda x: x)
        centres, select, score = (as_pixels(images).flatten(1) for images in (centres, select, score))
        validate_inputs(centres, select, score, sigmas=self.sigmas)
        return parzen_protocol(centres, select[rank::world], score[rank::world], self.sigmas, reduce_sum=reduce_sum,
                               check_inputs=False)  # fmt: skip

    # --- Lightning hooks -------------------------------------------------------------------------------------
    def _score(self, trainer: Trainer, pl_module: LightningModule, n_samples: int, select, score) -> ParzenResult:
        centres = gather_samples(trainer, pl_module, n_samples, self.seed, self.sample_batch_size)
        if not torch.isfinite(centres).all():  # the same on every rank (gathered), so every rank stops here
            raise DivergenceError(
                f"the generator produced non-finite samples (epoch {pl_module.current_epoch + 1}), so the Parzen estimate "
                "cannot be computed. Fix: lower the learning rates, or resume from an earlier checkpoint with another seed"
            )
        reduce_sum = lambda t: trainer.strategy.reduce(t, reduce_op="sum")  # noqa: E731
        return self.score(trainer.datamodule, centres, select, score, trainer.global_rank, trainer.world_size, reduce_sum)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.limit_val_batches != 0 and trainer.datamodule is not None:
            self.validation_sets(trainer.datamodule)  # sizes checked before the first epoch, not after it

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        result = self._score(trainer, pl_module, self.val_samples, *self.validation_sets(trainer.datamodule))
        # Every rank holds the same value; sync_dist averages identical numbers (and keeps Lightning quiet).
        pl_module.log_dict({"val/parzen_ll": result.ll, "val/parzen_sigma": result.sigma}, sync_dist=True)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.last_result = self._score(trainer, pl_module, self.test_samples, *self.test_sets(trainer.datamodule))
        pl_module.log_dict(
            {"test/parzen_ll": self.last_result.ll, "test/parzen_se": self.last_result.se,
             "test/parzen_sigma": self.last_result.sigma},
            sync_dist=True,
        )  # fmt: skip
