"""Feature-space sample quality as a callback: FID, KID, precision/recall, Inception-style score, classes covered.

DDP: every rank draws the same samples (`gather_samples`), extracts features for its own contiguous slice
of the samples and of the real images, and all_gathers them; rank 0 computes the metrics (the k-NN part is
the only costly step, and it is not split) and broadcasts them, so every rank logs the very same numbers.
"""

from __future__ import annotations

import logging

import torch
from lightning import Callback, LightningModule, Trainer

from gan.callbacks.parzen import gather_samples
from gan.errors import ConfigError, DataError
from gan.metrics.features import MissingFeatureNetwork, build_extractor
from gan.metrics.quality import QualityResult, quality_from_features

log = logging.getLogger("gan")
IF_MISSING = ("error", "skip")


class SampleQuality(Callback):
    """Logs `val/{fid,kid,kid_std,precision,recall,inception_score,classes_covered}` every `every_n_epochs`
    validations (`val_samples` samples vs the first `val_points` validation images) and the same keys under
    `test/` at test time (`test_samples` samples vs the test set, or its first `test_points`).

    The feature network: `feature=trained` loads the dataset's classifier from `cache_dir` (train it with
    `gan-train-features data=<dataset>`); `feature=inception` uses torchmetrics' Inception-v3, any dataset, with
    the weights file `inception_weights` (downloaded on first use when null; no Inception-style score or class
    coverage then). Without a cached network, `if_missing=error` stops at
    start-up with the command to run, `if_missing=skip` warns once and logs nothing (gan-eval's setting).
    Images are compared in [0, 1] (`datamodule.to_unit_range`: exact for unit/symmetric scaling, a per-image
    min-max stretch for gcn, applied to real and generated images alike).
    """

    def __init__(
        self,
        feature: str = "trained",
        cache_dir: str = "~/.cache/gan",
        inception_weights: str | None = None,
        if_missing: str = "error",
        every_n_epochs: int = 5,
        val_samples: int = 5000,
        val_points: int | None = 5000,
        test_samples: int = 10000,
        test_points: int | None = None,
        k: int = 3,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        min_class_fraction: float = 0.01,
        seed: int = 0,
        sample_batch_size: int = 1000,
        feature_batch_size: int = 1000,
    ) -> None:
        if if_missing not in IF_MISSING:
            raise ConfigError(f"callbacks.quality.if_missing={if_missing!r} is invalid: must be error or skip")
        for name, value in (("every_n_epochs", every_n_epochs), ("val_samples", val_samples), ("k", k),
                            ("test_samples", test_samples), ("kid_subsets", kid_subsets)):  # fmt: skip
            if not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"callbacks.quality.{name}={value!r} is invalid: must be an integer >= 1")
        self.feature, self.cache_dir, self.if_missing = feature, cache_dir, if_missing
        self.inception_weights = inception_weights
        self.every_n_epochs, self.val_samples, self.val_points = every_n_epochs, val_samples, val_points
        self.test_samples, self.test_points = test_samples, test_points
        self.options = {"k": k, "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size,
                        "min_class_fraction": min_class_fraction, "seed": seed}  # fmt: skip
        self.seed, self.sample_batch_size, self.feature_batch_size = seed, sample_batch_size, feature_batch_size
        self.extractor = None
        self.skipped: str | None = None
        self.last_result: QualityResult | None = None  # of the last test
        self.last_val_result: QualityResult | None = None

    # --- the feature network ----------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.extractor is not None or self.skipped is not None:
            return
        try:
            self.extractor = build_extractor(self.feature, self.cache_dir, trainer.datamodule, self.inception_weights)
        except MissingFeatureNetwork as error:
            if self.if_missing == "error":
                raise
            self.skipped = str(error)
            if trainer.is_global_zero:
                log.warning("quality metrics (FID, KID, precision/recall) skipped: %s", error)

    def report(self) -> dict | None:
        """For gan-eval's JSON: the last test result, or why there is none."""
        if self.last_result is not None:
            return self.last_result.as_dict()
        return {"skipped": self.skipped} if self.skipped else None

    # --- computing ---------------------------------------------------------------------------------------------
    def _features_everywhere(self, trainer: Trainer, pl_module: LightningModule, images: torch.Tensor):
        """Features and logits of all `images` on every rank, each rank extracting one contiguous slice."""
        world, rank, n = trainer.world_size, trainer.global_rank, len(images)
        per_rank = -(-n // world)
        local = images[rank * per_rank : (rank + 1) * per_rank].to(pl_module.device)
        features, logits = self.extractor.features_and_logits(local, self.feature_batch_size)
        if world == 1:
            return features, logits

        def gather(t: torch.Tensor) -> torch.Tensor:
            padded = torch.cat([t, t.new_zeros(per_rank - len(t), *t.shape[1:])])  # all_gather needs equal shapes
            return pl_module.all_gather(padded).flatten(0, 1)[:n]

        return gather(features), (gather(logits) if logits is not None else None)

    def _compute(self, trainer: Trainer, pl_module: LightningModule, n_samples: int, real: torch.Tensor
                 ) -> QualityResult:  # fmt: skip
        datamodule = trainer.datamodule
        if min(len(real), n_samples) <= self.options["k"]:  # checked on every rank, before any collective
            raise ConfigError(
                f"callbacks.quality compares {n_samples} samples with {len(real)} real images: both must exceed "
                f"k={self.options['k']}; raise val_samples/val_points/test_samples or the split sizes"
            )
        self.extractor.to(pl_module.device)
        samples = gather_samples(trainer, pl_module, n_samples, self.seed, self.sample_batch_size)
        fake = datamodule.to_unit_range(samples)
        real_features, real_logits = self._features_everywhere(trainer, pl_module, datamodule.to_unit_range(real))
        fake_features, fake_logits = self._features_everywhere(trainer, pl_module, fake)
        result: QualityResult | str | None = None
        if trainer.is_global_zero:
            try:
                result = quality_from_features(real_features, fake_features, real_logits, fake_logits, **self.options)
            except ValueError as error:  # e.g. non-finite samples; sent to every rank, so none waits forever
                result = str(error)
        result = trainer.strategy.broadcast(result, src=0)
        if isinstance(result, str):
            raise DataError(f"the quality metrics cannot be computed: {result}")
        return result

    # --- hooks -------------------------------------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.extractor is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        val = trainer.datamodule.images("val")
        real = val[: self.val_points] if self.val_points else val
        self.last_val_result = self._compute(trainer, pl_module, self.val_samples, real)
        # Identical values on every rank (broadcast); sync_dist averages them, which keeps Lightning quiet.
        pl_module.log_dict(self.last_val_result.metrics("val"), sync_dist=True)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.extractor is None:
            return
        test = trainer.datamodule.images("test")
        real = test[: self.test_points] if self.test_points else test
        self.last_result = self._compute(trainer, pl_module, self.test_samples, real)
        pl_module.log_dict(self.last_result.metrics("test"), sync_dist=True)
