"""The Parzen-window estimator (`gan.metrics.parzen`) against brute force, closed forms, and itself under DDP."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.special import logsumexp

from gan.metrics.parzen import DEFAULT_SIGMAS, parzen_log_likelihoods, parzen_protocol, validate_inputs

SIGMAS = [0.1, 0.2, 0.35, 0.5, 1.0]


def brute_force(centres: np.ndarray, points: np.ndarray, sigmas) -> np.ndarray:
    """log p(x) by the formula, float64, full (points x centres) distance matrix: (num_points, num_sigmas)."""
    centres = centres.reshape(len(centres), -1).astype(np.float64)
    points = points.reshape(len(points), -1).astype(np.float64)
    n, d = centres.shape
    sq = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    cols = [logsumexp(-sq / (2 * s**2), axis=1) - math.log(n) - d * math.log(s * math.sqrt(2 * math.pi)) for s in sigmas]
    return np.stack(cols, axis=1)


def data(seed: int, n_centres: int, n_points: int, dim: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_centres, dim, generator=g) * scale, torch.rand(n_points, dim, generator=g) * scale


# ------------------------------------------------------------------ agreement with brute force


@pytest.mark.parametrize("dim", [1, 20, 64])
def test_log_likelihoods_match_brute_force_float64(dim):
    centres, points = data(0, 300, 57, dim)
    ours = parzen_log_likelihoods(centres, points, SIGMAS)
    ref = brute_force(centres.numpy(), points.numpy(), SIGMAS)
    assert ours.dtype == torch.float64 and ours.shape == (57, len(SIGMAS))
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-4)
    # The values really span a range (not a degenerate constant), so the comparison means something.
    assert ref.max() - ref.min() > 0.5


def test_log_likelihoods_match_brute_force_with_offset_and_image_shape():
    # Far from the origin (large norms) and (N, 1, 4, 4) image-shaped inputs: centring keeps float32 exact enough.
    centres, points = data(1, 200, 33, 16)
    centres, points = (centres + 50.0).view(200, 1, 4, 4), (points + 50.0).view(33, 1, 4, 4)
    ours = parzen_log_likelihoods(centres, points, SIGMAS)
    ref = brute_force(centres.numpy(), points.numpy(), SIGMAS)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-3)


def test_float64_inputs_agree_with_float32_and_keep_precision_far_from_zero():
    centres, points = data(2, 100, 20, 10)
    a = parzen_log_likelihoods(centres, points, SIGMAS)
    b = parzen_log_likelihoods(centres.double(), points.double(), SIGMAS)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    # float64 data far from the origin is centred before the float32 cast, so the offset costs nothing
    far = parzen_log_likelihoods(centres.double() + 1e4, points.double() + 1e4, SIGMAS)
    torch.testing.assert_close(far, b, rtol=0, atol=1e-4)


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0, 2.5])
@pytest.mark.parametrize("num_identical", [1, 7])
def test_identical_centres_give_the_gaussian_log_density_in_closed_form(sigma, num_identical):
    d = 5
    mu = torch.tensor([0.3, -1.2, 2.0, 0.0, 0.7])
    radii = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.7, 3.0])
    # Points at distance r from mu along different axes (and one along a diagonal).
    directions = torch.eye(d)[torch.arange(len(radii)) % d]
    directions[-1] = torch.ones(d) / math.sqrt(d)
    points = mu + radii[:, None] * directions
    centres = mu.repeat(num_identical, 1)
    ours = parzen_log_likelihoods(centres, points, [sigma])[:, 0]
    expected = -(radii.double() ** 2) / (2 * sigma**2) - d * math.log(sigma * math.sqrt(2 * math.pi))
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-4)


def test_two_centres_closed_form():
    # x midway between two centres at distance 2a: log p = -a^2/(2 sigma^2) - d log(sigma sqrt(2 pi)) exactly;
    # x on one centre: log(0.5 + 0.5 exp(-4a^2/(2 sigma^2))) - d log(sigma sqrt(2 pi)).
    a, sigma, d = 0.6, 0.4, 3
    centres = torch.tensor([[-a, 0.0, 0.0], [a, 0.0, 0.0]])
    points = torch.tensor([[0.0, 0.0, 0.0], [a, 0.0, 0.0]])
    norm = d * math.log(sigma * math.sqrt(2 * math.pi))
    expected = torch.tensor(
        [-(a**2) / (2 * sigma**2) - norm, math.log(0.5 + 0.5 * math.exp(-4 * a**2 / (2 * sigma**2))) - norm],
        dtype=torch.float64,
    )
    torch.testing.assert_close(parzen_log_likelihoods(centres, points, [sigma])[:, 0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk_elements", [1, 37, 300, 10**9])
def test_chunked_path_equals_unchunked(chunk_elements):
    centres, points = data(3, 30, 23, 12)
    full = parzen_log_likelihoods(centres, points, SIGMAS)
    chunked = parzen_log_likelihoods(centres, points, SIGMAS, chunk_elements=chunk_elements)
    # Only the matmul blocking differs (float32): a few ulps, far below any real bug.
    torch.testing.assert_close(chunked, full, rtol=0, atol=5e-5)
    valid, test = points[:10], points[10:]
    a = parzen_protocol(centres, valid, test, sigmas=SIGMAS)
    b = parzen_protocol(centres, valid, test, sigmas=SIGMAS, chunk_elements=chunk_elements)
    assert a.sigma == b.sigma and a.num_points == b.num_points == 13
    assert a.ll == pytest.approx(b.ll, abs=1e-5) and a.se == pytest.approx(b.se, abs=1e-5)


# ------------------------------------------------------------------ the protocol


def test_protocol_matches_brute_force_argmax_mean_and_population_se():
    centres, _ = data(4, 400, 0, 8)
    g = torch.Generator().manual_seed(5)
    # Validation/test points near the centres, so the best sigma is an interior point of the grid.
    valid = centres[torch.randint(0, 400, (60,), generator=g)] + 0.15 * torch.randn(60, 8, generator=g)
    test = centres[torch.randint(0, 400, (41,), generator=g)] + 0.15 * torch.randn(41, 8, generator=g)
    sigmas = list(DEFAULT_SIGMAS)
    result = parzen_protocol(centres, valid, test, sigmas=sigmas)

    ref_valid = brute_force(centres.numpy(), valid.numpy(), sigmas).mean(axis=0)
    best = int(np.argmax(ref_valid))
    ordered = np.sort(ref_valid)
    assert ordered[-1] - ordered[-2] > 1e-2, "the test data must not sit on a near-tie"
    assert 0 < best < len(sigmas) - 1, "the chosen sigma should be interior for this data"
    assert result.sigma == sigmas[best]
    assert list(result.valid_ll) == sigmas
    np.testing.assert_allclose(list(result.valid_ll.values()), ref_valid, rtol=0, atol=1e-4)

    ref_test = brute_force(centres.numpy(), test.numpy(), [sigmas[best]])[:, 0]
    assert result.ll == pytest.approx(ref_test.mean(), abs=1e-4)
    se_ddof0 = ref_test.std(ddof=0) / math.sqrt(len(ref_test))
    se_ddof1 = ref_test.std(ddof=1) / math.sqrt(len(ref_test))
    assert result.se == pytest.approx(se_ddof0, rel=1e-5)
    assert abs(se_ddof1 - se_ddof0) > 1e-3 * se_ddof0  # so the line above tells ddof 0 from ddof 1
    assert result.se != pytest.approx(se_ddof1, rel=1e-5)
    assert result.num_points == 41 and result.num_centres == 400


def test_sigma_is_selected_on_validation_not_test():
    centres, _ = data(6, 50, 0, 4)
    g = torch.Generator().manual_seed(7)
    valid = centres[:20] + 1e-3 * torch.randn(20, 4, generator=g)  # right on the centres: smallest sigma wins
    test = centres[:20] + 3.0 * torch.randn(20, 4, generator=g)  # far away: a large sigma would win on test
    sigmas = [0.1, 0.3, 1.0, 3.0]
    result = parzen_protocol(centres, valid, test, sigmas=sigmas)
    test_by_sigma = brute_force(centres.numpy(), test.numpy(), sigmas).mean(axis=0)
    assert int(np.argmax(test_by_sigma)) != 0
    assert result.sigma == 0.1
    assert result.ll == pytest.approx(test_by_sigma[0], abs=1e-3)
    # The grid order does not matter: the same sigma is picked from a shuffled grid.
    shuffled = parzen_protocol(centres, valid, test, sigmas=[1.0, 3.0, 0.1, 0.3])
    assert shuffled.sigma == 0.1 and shuffled.ll == pytest.approx(result.ll, abs=1e-9)


def test_single_test_point_has_zero_se_and_as_dict_keys():
    centres, points = data(8, 20, 3, 3)
    result = parzen_protocol(centres, points[:2], points[2:], sigmas=[0.2, 0.5])
    assert result.se == 0.0
    ref = brute_force(centres.numpy(), points[2:].numpy(), [result.sigma])[0, 0]
    assert result.ll == pytest.approx(ref, abs=1e-4)
    d = result.as_dict()
    assert set(d) == {"sigma", "ll", "se", "valid_ll", "num_centres", "num_points"}
    assert list(d["valid_ll"]) == ["0.2", "0.5"]


# ------------------------------------------------------------------ input validation


def _ok():
    centres, points = data(9, 10, 6, 4)
    return centres, points[:3], points[3:]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c, v, t, s: (c, v[:, :3], t, s), r"validation points have dimension 3 but the samples have 4"),
        (lambda c, v, t, s: (c, v, t[:, :2], s), r"test points have dimension 2 but the samples have 4"),
        (lambda c, v, t, s: (c.index_fill(0, torch.tensor([1]), float("nan")), v, t, s), r"samples contain NaN"),
        (lambda c, v, t, s: (c, v.index_fill(0, torch.tensor([0]), float("inf")), t, s), r"validation contain NaN or inf"),
        (lambda c, v, t, s: (c, v, t.index_fill(0, torch.tensor([2]), -float("inf")), s), r"test contain NaN or inf"),
        (lambda c, v, t, s: (c[:0], v, t, s), r"centres must be a non-empty"),
        (lambda c, v, t, s: (c[:, :0], v[:, :0], t[:, :0], s), r"centres must be a non-empty"),
        (lambda c, v, t, s: (c, v[:0], t, s), r"validation points must be a non-empty"),
        (lambda c, v, t, s: (c, v, t[:0], s), r"test points must be a non-empty"),
        (lambda c, v, t, s: (c, v, t, [0.1, 0.0]), r"sigmas must be a non-empty list of positive"),
        (lambda c, v, t, s: (c, v, t, [-0.5]), r"sigmas must be a non-empty list of positive"),
        (lambda c, v, t, s: (c, v, t, [float("nan")]), r"sigmas must be a non-empty list of positive"),
        (lambda c, v, t, s: (c, v, t, [float("inf")]), r"sigmas must be a non-empty list of positive"),
        (lambda c, v, t, s: (c, v, t, []), r"sigmas must be a non-empty list of positive"),
        (lambda c, v, t, s: (c[0], v, t, s), r"centres must be a non-empty \(N, D\)"),
    ],
)
def test_validate_inputs_rejects_bad_inputs(mutate, match):
    centres, valid, test, sigmas = mutate(*_ok(), [0.1, 0.2])
    with pytest.raises(ValueError, match=match):
        validate_inputs(centres, valid, test, sigmas=sigmas)
    with pytest.raises(ValueError, match=match):
        parzen_protocol(centres, valid, test, sigmas=sigmas)


def test_validate_inputs_accepts_good_inputs():
    centres, valid, test = _ok()
    validate_inputs(centres, valid, test, sigmas=DEFAULT_SIGMAS)  # no exception
    assert DEFAULT_SIGMAS[0] == pytest.approx(0.1) and DEFAULT_SIGMAS[-1] == pytest.approx(1.0)
    assert len(DEFAULT_SIGMAS) == 10
    np.testing.assert_allclose(DEFAULT_SIGMAS, np.logspace(-1, 0, 10))


# ------------------------------------------------------------------ DDP: disjoint slices + summed sums

# (num_valid, num_test): even split, uneven split, and one where rank 1 gets no validation point.
DDP_CASES = [(40, 30), (41, 27), (1, 3)]
WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        cases = torch.load(Path(out_dir) / "cases.pt")
        results = []
        for centres, valid, test in cases:
            result = parzen_protocol(
                centres,
                valid[rank::WORLD],
                test[rank::WORLD],
                sigmas=SIGMAS,
                reduce_sum=lambda t: (dist.all_reduce(t), t)[1],
                check_inputs=False,
            )
            results.append(result.as_dict())
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _ddp_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    cases = []
    for i, (n_valid, n_test) in enumerate(DDP_CASES):
        centres, points = data(100 + i, 64, n_valid + n_test, 6)
        cases.append((centres, points[:n_valid], points[n_valid:]))
    return cases


def test_ddp_two_ranks_equal_a_single_process(tmp_path):
    cases = _ddp_cases()
    torch.save(cases, tmp_path / "cases.pt")
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for i, (centres, valid, test) in enumerate(cases):
        single = parzen_protocol(centres, valid, test, sigmas=SIGMAS).as_dict()
        assert single["num_points"] == len(test)
        for rank in range(WORLD):
            got = per_rank[rank][i]
            assert got["sigma"] == single["sigma"], (i, rank)
            assert got["num_points"] == single["num_points"] and got["num_centres"] == single["num_centres"]
            assert got["ll"] == pytest.approx(single["ll"], rel=1e-6)
            assert got["se"] == pytest.approx(single["se"], rel=1e-6, abs=1e-12)
            assert got["valid_ll"].keys() == single["valid_ll"].keys()
            for key, value in single["valid_ll"].items():
                assert got["valid_ll"][key] == pytest.approx(value, rel=1e-6)
        # Both ranks report the identical numbers (they reduce the same sums).
        assert per_rank[0][i] == per_rank[1][i]
    # The uneven case really is uneven, and the test is not vacuous: se > 0 where there are several points.
    assert len(cases[1][1][0::2]) != len(cases[1][1][1::2]) and len(cases[1][2][0::2]) != len(cases[1][2][1::2])
    assert per_rank[0][0]["se"] > 0


def test_validation_sets_score_the_rest_of_the_split_when_val_points_is_null():
    from types import SimpleNamespace

    from gan.callbacks.parzen import ParzenLogLikelihood
    from gan.errors import ConfigError

    data = SimpleNamespace(images=lambda split: torch.arange(10.0).reshape(10, 1))
    select, score = ParzenLogLikelihood(select_points=4, val_points=None).validation_sets(data)
    assert select.flatten().tolist() == [0, 1, 2, 3] and score.flatten().tolist() == [4, 5, 6, 7, 8, 9]
    assert ParzenLogLikelihood(select_points=4, val_points=3).validation_sets(data)[1].flatten().tolist() == [4, 5, 6]
    with pytest.raises(ConfigError, match="has 10 images, too few .* Fix: callbacks.parzen.select_points=5"):
        ParzenLogLikelihood(select_points=4, val_points=7).validation_sets(data)  # 6 would be scored, not 7
