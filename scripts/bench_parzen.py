"""Benchmark and cross-check the Parzen-window estimator against a naive NumPy implementation.

The naive version is written straight from the formula of Goodfellow et al. (2014), Table 1:

    log p(x) = logsumexp_j(-||x - mu_j||^2 / (2 sigma^2)) - log N - d log(sigma sqrt(2 pi))

in float64, per sigma and per batch of points, broadcasting (x[:, None, :] - mu[None]) ** 2 (as the original
parzen_ll.py does), sigma picked on the validation points, mean and standard error (ddof 0) on the test points.
Ours is `gan.metrics.parzen.parzen_protocol`. Both run on the same real MNIST arrays in one process:

    centres = train[0:10000] (real images stand in for generator samples) or --samples file.npy
    valid   = train[50000:51000]   (the paper's first 1000 validation images)
    test    = the 10,000 test images (or the first --num-test)

Sanity anchor: real training images as centres score about 241 nats on the full test set (sigma ~ 0.167).
The naive full protocol takes several minutes on 2 cores.

    python scripts/bench_parzen.py --num-test 500          # quick check
    python scripts/bench_parzen.py                          # the full protocol
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from scipy.special import logsumexp

from gan.metrics.parzen import DEFAULT_SIGMAS, parzen_protocol


def naive_log_likelihoods(mu: np.ndarray, x: np.ndarray, sigma: float, batch_size: int) -> np.ndarray:
    """log p(x_i) for every row of x under the Parzen window of width sigma centred on the rows of mu (float64)."""
    n, d = mu.shape
    const = -math.log(n) - d * math.log(sigma * math.sqrt(2 * math.pi))
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        sq_dist = ((xb[:, None, :] - mu[None]) ** 2).sum(axis=2)  # (batch, N)
        out[start : start + xb.shape[0]] = logsumexp(-sq_dist / (2 * sigma**2), axis=1) + const
    return out


def naive_protocol(mu: np.ndarray, valid: np.ndarray, test: np.ndarray, sigmas, batch_size: int) -> dict:
    valid_ll = {float(s): float(naive_log_likelihoods(mu, valid, s, batch_size).mean()) for s in sigmas}
    sigma = max(valid_ll, key=valid_ll.get)
    ll = naive_log_likelihoods(mu, test, sigma, batch_size)
    return {"sigma": sigma, "ll": float(ll.mean()), "se": float(ll.std() / math.sqrt(len(ll))), "valid_ll": valid_ll}


def load_arrays(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    train = MNIST(args.data_root, train=True, download=False).data.numpy().reshape(-1, 784)
    test = MNIST(args.data_root, train=False, download=False).data.numpy().reshape(-1, 784)
    if args.samples:
        centres = np.load(args.samples, allow_pickle=False)
        centres = centres.reshape(centres.shape[0], -1).astype(np.float64)
        if centres.shape[1] != 784:
            raise SystemExit(f"bench_parzen: --samples has {centres.shape[1]} features per row, MNIST needs 784")
        centres = centres[: args.num_centres]
    else:
        centres = train[: args.num_centres].astype(np.float64) / 255.0
    valid = train[50000 : 50000 + args.num_valid].astype(np.float64) / 255.0
    test = test[: args.num_test].astype(np.float64) / 255.0
    return centres, valid, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("GAN_DATA_ROOT", "data")  # as paths.data_dir
    parser.add_argument("--data-root", default=default_root, help="torchvision MNIST root (holds MNIST/raw)")
    parser.add_argument("--samples", default=None, help=".npy generator samples in [0, 1] (default: real train[0:10000])")
    parser.add_argument("--num-centres", type=int, default=10000)
    parser.add_argument("--num-valid", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each implementation; the best time is kept")
    parser.add_argument("--batch-size", type=int, default=4, help="points per naive broadcast (4 x 10k x 784 x 8 B = 250 MB)")
    parser.add_argument("--skip-naive", action="store_true", help="time ours only")
    args = parser.parse_args()

    centres, valid, test = load_arrays(args)
    sigmas = list(DEFAULT_SIGMAS)
    print(
        f"centres {centres.shape}, valid {valid.shape}, test {test.shape}, {len(sigmas)} sigmas, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    c_t, v_t, t_t = (torch.from_numpy(a) for a in (centres, valid, test))
    ours_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = parzen_protocol(c_t, v_t, t_t, sigmas=sigmas)
        ours_times.append(time.perf_counter() - start)
    ours_s = min(ours_times)
    print(f"ours : {ours_s:9.3f} s   sigma {ours.sigma:.6g}  ll {ours.ll:.4f} +- {ours.se:.4f}", flush=True)

    summary = {
        "num_centres": len(centres),
        "num_valid": len(valid),
        "num_test": len(test),
        "ours_seconds": ours_s,
        "ours": {"sigma": ours.sigma, "ll": ours.ll, "se": ours.se},
    }
    if not args.skip_naive:
        naive_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            naive = naive_protocol(centres, valid, test, sigmas, args.batch_size)
            naive_times.append(time.perf_counter() - start)
        naive_s = min(naive_times)
        print(f"naive: {naive_s:9.3f} s   sigma {naive['sigma']:.6g}  ll {naive['ll']:.4f} +- {naive['se']:.4f}")
        diff = {
            "sigma": abs(naive["sigma"] - ours.sigma),
            "ll": abs(naive["ll"] - ours.ll),
            "se": abs(naive["se"] - ours.se),
            "valid_ll": max(abs(naive["valid_ll"][s] - ours.valid_ll[s]) for s in map(float, sigmas)),
        }
        print(f"ratio naive/ours: {naive_s / ours_s:.1f}x")
        print(
            f"max |delta|: sigma {diff['sigma']:.3g}, test ll {diff['ll']:.3g}, se {diff['se']:.3g}, "
            f"valid ll (over sigmas) {diff['valid_ll']:.3g}"
        )
        summary.update(
            naive_seconds=naive_s,
            ratio=naive_s / ours_s,
            naive={"sigma": naive["sigma"], "ll": naive["ll"], "se": naive["se"]},
            max_abs_diff=diff,
        )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
