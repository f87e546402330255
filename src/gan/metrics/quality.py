"""Feature-space sample-quality metrics: FID, KID, precision/recall, an Inception-style score, classes covered.

All of them compare real and generated images through a feature network (gan.metrics.features):

- FID (Heusel et al., 2017) and KID (Binkowski et al., 2018; mean and std over random subsets) come from
  torchmetrics' FrechetInceptionDistance / KernelInceptionDistance. The features are extracted once (they
  feed every metric here), so torchmetrics gets them through `PrecomputedFeatures`, an identity `feature=`
  module; with images, `FrechetInceptionDistance(feature=extractor, normalize=True)` gives the same number.
- Precision and recall (Kynkaenniemi et al., 2019): the real manifold is the union of balls around each
  real feature vector with radius the distance to its k-th nearest real neighbour; precision is the
  fraction of samples inside it. Recall swaps the roles (fraction of real images inside the samples' manifold).
- Inception-style score (Salimans et al., 2016) with the dataset's own classifier: exp(E_x KL(p(y|x) || p(y))),
  p(y) the mean of p(y|x) over the samples; between 1 (one class, or uncertain) and the number of classes.
- Classes covered: how many classes receive at least `min_fraction` of the samples (argmax of p(y|x));
  with 10 balanced classes a full-coverage model puts ~10% in each, 1% is the default bar.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn


class PrecomputedFeatures(nn.Module):
    """The identity, as torchmetrics' `feature=`: update() then takes feature vectors instead of images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@dataclass
class QualityResult:
    fid: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    inception_score: float | None  # None with a feature network that has no classes (Inception-v3)
    classes_covered: int | None
    real_inception_score: float | None  # the same two for the real images: the best a model can do
    real_classes_covered: int | None
    n_samples: int
    n_real: int
    k: int
    kid_subset_size: int

    def metrics(self, prefix: str) -> dict[str, float]:
        """What the callback logs: `<prefix>/fid`, ... (scores that were not computed are left out)."""
        values = {"fid": self.fid, "kid": self.kid, "kid_std": self.kid_std, "precision": self.precision,
                  "recall": self.recall, "inception_score": self.inception_score,
                  "classes_covered": self.classes_covered}  # fmt: skip
        return {f"{prefix}/{name}": float(v) for name, v in values.items() if v is not None}

    def as_dict(self) -> dict:
        return asdict(self)


def _quiet_metric(cls, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KID's "saves all features in a buffer" warning
        return cls(**kwargs)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two sets of feature vectors (N, d), by torchmetrics (float64 statistics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_sets(real, fake, at_least=2)
    fid = _quiet_metric(FrechetInceptionDistance, feature=PrecomputedFeatures(real.shape[1]), normalize=True,
                        sync_on_compute=False).to(real.device)  # fmt: skip
    fid.update(real, real=True)
    fid.update(fake.to(real.device), real=False)
    return float(fid.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float, int]:  # fmt: skip
    """KID (mean, std over `subsets` random subsets, subset size capped at the set sizes) by torchmetrics.
    The subsets are drawn from a private generator seeded with `seed`: the same features give the same KID."""
    from torchmetrics.image.kid import KernelInceptionDistance

    _check_sets(real, fake, at_least=2)
    size = min(subset_size, len(real), len(fake))
    kid = _quiet_metric(KernelInceptionDistance, feature=PrecomputedFeatures(real.shape[1]), subsets=subsets,
                        subset_size=size, normalize=True, sync_on_compute=False)  # fmt: skip
    kid.update(real, real=True)
    kid.update(fake.to(real.device), real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws the subsets with torch.randperm (CPU RNG)
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std), size


def knn_radii(features: torch.Tensor, k: int, chunk: int = 1000) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself, at distance 0, is skipped)."""
    if not 1 <= k < len(features):
        raise ValueError(f"k={k} must be between 1 and the number of points minus one ({len(features) - 1})")
    return torch.cat([
        torch.cdist(features[start : start + chunk], features).kthvalue(k + 1, dim=1).values
        for start in range(0, len(features), chunk)
    ])  # fmt: skip


def fraction_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1000) -> float:
    """Fraction of `points` within radii[j] of some centres[j] (inside the manifold those balls make)."""
    inside = 0
    for start in range(0, len(points), chunk):
        distances = torch.cdist(points[start : start + chunk], centres)
        inside += int((distances <= radii.unsqueeze(0)).any(dim=1).sum())
    return inside / len(points)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al., 2019) of `fake` w.r.t. `real` feature vectors."""
    _check_sets(real, fake, at_least=k + 1)
    real, fake = real.float(), fake.float().to(real.device)
    precision = fraction_inside(fake, real, knn_radii(real, k, chunk), chunk)
    recall = fraction_inside(real, fake, knn_radii(fake, k, chunk), chunk)
    return precision, recall


def inception_score(logits: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) over all rows of `logits` (one split), p(y) their mean softmax."""
    log_p = torch.log_softmax(logits.double(), dim=1)
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(len(log_p))
    kl = (log_p.exp() * (log_p - log_marginal)).sum(dim=1)
    return float(kl.mean().exp())


def classes_covered(logits: torch.Tensor, min_fraction: float = 0.01) -> int:
    """Classes that are the argmax of at least `min_fraction` of the rows (and at least one row)."""
    counts = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1])
    threshold = max(1, math.ceil(min_fraction * len(logits) - 1e-9))
    return int((counts >= threshold).sum())


def quality_from_features(
    real: torch.Tensor,
    fake: torch.Tensor,
    real_logits: torch.Tensor | None = None,
    fake_logits: torch.Tensor | None = None,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    min_class_fraction: float = 0.01,
    seed: int = 0,
) -> QualityResult:
    """Every metric from features (and class logits, when the feature network has classes)."""
    fid = frechet_distance(real, fake)
    kid, kid_std, size = kernel_distance(real, fake, kid_subsets, kid_subset_size, seed)
    precision, recall = precision_recall(real, fake, k)
    has_classes = real_logits is not None and fake_logits is not None
    return QualityResult(
        fid=fid, kid=kid, kid_std=kid_std, precision=precision, recall=recall,
        inception_score=inception_score(fake_logits) if has_classes else None,
        classes_covered=classes_covered(fake_logits, min_class_fraction) if has_classes else None,
        real_inception_score=inception_score(real_logits) if has_classes else None,
        real_classes_covered=classes_covered(real_logits, min_class_fraction) if has_classes else None,
        n_samples=len(fake), n_real=len(real), k=k, kid_subset_size=size,
    )  # fmt: skip


def compute_quality(real_images: torch.Tensor, fake_images: torch.Tensor, extractor: nn.Module, batch_size: int = 1000,
                    **kwargs) -> QualityResult:  # fmt: skip
    """All metrics for two sets of [0, 1] images on one process (the callback does the same across ranks)."""
    real, real_logits = extractor.features_and_logits(real_images, batch_size)
    fake, fake_logits = extractor.features_and_logits(fake_images, batch_size)
    return quality_from_features(real, fake, real_logits, fake_logits, **kwargs)


def _check_sets(real: torch.Tensor, fake: torch.Tensor, at_least: int) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        shapes = f"{tuple(real.shape)} and {tuple(fake.shape)}"
        raise ValueError(f"expected two (N, d) feature sets with the same d, got {shapes}")
    if min(len(real), len(fake)) < at_least:
        raise ValueError(f"need at least {at_least} real and generated points, got {len(real)} and {len(fake)}")
    for name, t in (("real", real), ("generated", fake)):
        if not torch.isfinite(t).all():
            raise ValueError(f"the {name} features contain NaN or inf")
