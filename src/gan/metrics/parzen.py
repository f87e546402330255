"""Gaussian Parzen-window log-likelihood, the metric of the paper's Table 1.

log p(x) = logmeanexp_j(-||x - mu_j||^2 / (2 sigma^2)) - d * log(sigma * sqrt(2 pi)),  mu_j = generator samples.

Squared distances come from ||x||^2 + ||mu||^2 - 2 x.mu in chunks of points (bounded memory), and every
sigma is evaluated from the same distance chunk. Per-point results are float64; the protocol reduces them
through sums only, so a distributed run can score disjoint slices and add the sums (`reduce_sum`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.logspace(-1, 0, 10))
# Elements of one (points x centres) distance chunk: 2**25 float32 = 128 MiB, a few such buffers at most.
CHUNK_ELEMENTS = 2**25

# exp(-87) ~ 1.6e-38 is still a normal float32 (the smallest is ~1.2e-38 = exp(-87.3)).
SMALLEST_NORMAL_EXPONENT = -87.0

ReduceSum = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ParzenResult:
    sigma: float
    ll: float
    se: float
    valid_ll: dict[float, float] = field(default_factory=dict)
    num_centres: int = 0
    num_points: int = 0

    def as_dict(self) -> dict:
        return {
            "sigma": self.sigma,
            "ll": self.ll,
            "se": self.se,
            "valid_ll": {f"{s:.6g}": v for s, v in self.valid_ll.items()},
            "num_centres": self.num_centres,
            "num_points": self.num_points,
        }


def validate_inputs(centres: torch.Tensor, *point_sets: torch.Tensor, sigmas: Sequence[float]) -> None:
    """Raise ValueError with a one-line reason for inputs the estimator cannot score."""
    if centres.ndim != 2 or centres.shape[0] == 0 or centres.shape[1] == 0:
        raise ValueError(f"centres must be a non-empty (N, D) array, got shape {tuple(centres.shape)}")
    for name, points in zip(("validation", "test"), point_sets):
        if points.ndim != 2 or points.shape[0] == 0:
            raise ValueError(f"{name} points must be a non-empty (N, D) array, got shape {tuple(points.shape)}")
        if points.shape[1] != centres.shape[1]:
            raise ValueError(
                f"{name} points have dimension {points.shape[1]} but the samples have {centres.shape[1]}"
            )
    for name, array in zip(("samples", "validation", "test"), (centres, *point_sets)):
        if not torch.isfinite(array).all():
            raise ValueError(f"{name} contain NaN or infinite values")
    if len(sigmas) == 0 or not all(math.isfinite(s) and s > 0 for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers, got {list(sigmas)}")


@torch.no_grad()
def parzen_log_likelihoods(
    centres: torch.Tensor,
    points: torch.Tensor,
    sigmas: Sequence[float],
    chunk_elements: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """log p(x) of every point under the Parzen window of every sigma: a float64 (num_points, num_sigmas) tensor.

    Runs on the device of `centres`; `points` are moved there chunk by chunk.
    """
    centres = centres.flatten(1)
    if not centres.is_floating_point():  # integer pixels: a mean and a shift need a float type
        centres = centres.float()
    # Distances do not change under a shift; centring both sets (in the inputs' own precision) shrinks the
    # norms and with them the float32 cancellation error of ||x||^2 + ||mu||^2 - 2 x.mu.
    shift = centres.mean(dim=0, keepdim=True)
    centres = (centres - shift).float()
    num_centres, dim = centres.shape
    # [x, 1] . [-2 mu, ||mu||^2] = ||mu||^2 - 2 x.mu in one matrix product (scaling by -2 is exact), written
    # into a reused buffer: no broadcast copy, no fresh 128 MiB per chunk.
    centres_aug = torch.cat([centres * -2.0, centres.square().sum(dim=1, keepdim=True)], dim=1)
    sigmas_t = torch.as_tensor(list(sigmas), dtype=torch.float64)
    # The constant per sigma: -log N - d log(sigma sqrt(2 pi)), in float64.
    offsets = -math.log(num_centres) - dim * torch.log(sigmas_t * math.sqrt(2 * math.pi))
    out = torch.empty(points.shape[0], len(sigmas), dtype=torch.float64)
    chunk = max(1, chunk_elements // num_centres)
    distances = torch.empty(min(chunk, points.shape[0]), num_centres, device=centres.device)
    work = torch.empty_like(distances)
    for start in range(0, points.shape[0], chunk):
        x = (points[start : start + chunk].to(shift).flatten(1) - shift).float()
        rows = slice(start, start + x.shape[0])
        x_aug = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        sq_dist = torch.mm(x_aug, centres_aug.T, out=distances[: x.shape[0]])
        sq_dist.add_(x.square().sum(dim=1, keepdim=True))
        # logsumexp by hand, shifted by the nearest centre: that shift is the same for every sigma, so each
        # sigma costs one scale, one exp and one sum (torch.logsumexp would redo max and shift per sigma).
        nearest = sq_dist.amin(dim=1, keepdim=True).clamp_(min=0.0)
        excess = sq_dist.sub_(nearest).clamp_(min=0.0)  # = clamp(d, 0) - nearest; the largest term is exp(0)
        buffer = work[: x.shape[0]]
        for j, sigma in enumerate(sigmas):
            scale = -0.5 / sigma**2
            # Clamped at -87 so that exp stays a normal float32 (about 1e-38, nothing beside the term 1):
            # subnormal results make exp ten times slower on x86.
            terms = torch.mul(excess, scale, out=buffer).clamp_(min=SMALLEST_NORMAL_EXPONENT).exp_()
            # Terms lie in (0, 1] with one of them 1: a float32 sum is exact to ~1e-7 relative (a float64
            # accumulation costs 20x more here), and the log and the shift back are taken in float64.
            log_sum = terms.sum(dim=1).double().log_() + nearest.squeeze(1).double() * scale
            out[rows, j] = log_sum.cpu() + offsets[j]
    return out


def _sums(values: torch.Tensor) -> torch.Tensor:
    """[sum, sum of squares, count] per column, float64: what a distributed reduction adds up."""
    count = torch.full((1, values.shape[1]), float(values.shape[0]), dtype=torch.float64)
    return torch.cat([values.sum(0, keepdim=True), values.square().sum(0, keepdim=True), count])


def _mean_and_se(sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    total, total_sq, count = sums
    mean = total / count
    variance = (total_sq / count - mean.square()).clamp(min=0.0)  # population variance (ddof 0)
    return mean, variance.sqrt() / count.sqrt()


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def parzen_protocol(
    centres: torch.Tensor,
    valid: torch.Tensor,
    test: torch.Tensor,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    reduce_sum: ReduceSum = _identity,
    chunk_elements: int = CHUNK_ELEMENTS,
    check_inputs: bool = True,
) -> ParzenResult:
    """The paper's protocol: pick sigma by mean log-likelihood on `valid`, report mean and standard error on `test`.

    In a distributed run every rank passes the same `centres` and its own disjoint slices of `valid` and
    `test`, with `reduce_sum` summing a float64 tensor across ranks; every rank then returns the same result.
    A rank's slice may be empty, so distributed callers check the whole sets first and pass `check_inputs=False`.
    """
    if check_inputs:
        validate_inputs(centres, valid, test, sigmas=sigmas)
    valid_sums = reduce_sum(_sums(parzen_log_likelihoods(centres, valid, sigmas, chunk_elements)).to(centres.device))
    valid_means, _ = _mean_and_se(valid_sums.cpu())
    best = int(torch.argmax(valid_means))
    test_sums = reduce_sum(
        _sums(parzen_log_likelihoods(centres, test, [sigmas[best]], chunk_elements)).to(centres.device)
    )
    test_mean, test_se = _mean_and_se(test_sums.cpu())
    return ParzenResult(
        sigma=float(sigmas[best]),
        ll=float(test_mean[0]),
        se=float(test_se[0]),
        valid_ll={float(s): float(v) for s, v in zip(sigmas, valid_means)},
        num_centres=int(centres.shape[0]),
        num_points=int(test_sums[2, 0]),
    )
