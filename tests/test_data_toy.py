"""The 1-D toy distribution (Figure 1, Prop. 1): fixed draws, determinism by seed, and an exact density."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from gan.config import validate_config
from gan.data import Toy1DDataModule
from gan.errors import ConfigError
from tests.helpers import compose_train

MIXTURE = dict(means=[-2.0, 1.0, 3.0], stds=[0.5, 0.3, 1.0], weights=[2.0, 1.0, 1.0])  # weights sum to 4


def loaded(**kwargs) -> Toy1DDataModule:
    dm = Toy1DDataModule(**kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def normal_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def test_sizes_and_shapes():
    dm = loaded(num_train=300, num_val=50, num_test=70, seed=0)
    assert {s: tuple(dm.images(s).shape) for s in ("train", "val", "test")} == {
        "train": (300, 1), "val": (50, 1), "test": (70, 1),
    }  # fmt: skip
    assert dm.images("train").dtype == torch.float32 and dm.shape == (1,)
    dm.batch_size = 32
    batches = list(dm.train_dataloader())
    assert len(batches) == 300 // 32 and all(b.shape == (32, 1) for b in batches)  # drop_last for training
    assert {tuple(b.shape) for b in dm.val_dataloader()} == {(50, 1)}


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = loaded(seed=5), loaded(seed=5), loaded(seed=6)
    for split in ("train", "val", "test"):
        assert torch.equal(a.images(split), b.images(split))
        assert not torch.equal(a.images(split), c.images(split))
    assert not torch.equal(a.images("train")[:100], a.images("val")[:100])  # the splits are different draws


def test_data_seed_fixes_the_points_whatever_the_training_seed():
    a, b = loaded(seed=1, data_seed=0), loaded(seed=2, data_seed=0)
    assert torch.equal(a.images("train"), b.images("train")) and a.seed != b.seed
    assert torch.equal(loaded(seed=0).images("test"), a.images("test"))  # data_seed=None falls back to seed


def test_samples_follow_the_mixture():
    dm = loaded(num_train=40000, seed=0, **MIXTURE)
    x = dm.images("train").double().squeeze(1)
    w = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    means, stds = torch.tensor(MIXTURE["means"]).double(), torch.tensor(MIXTURE["stds"]).double()
    mean = (w * means).sum()
    var = (w * (stds**2 + means**2)).sum() - mean**2
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / len(x))
    assert abs(x.var() / var - 1) < 0.03
    assert abs((x < -0.75).double().mean().item() - 0.5) < 0.02  # the first component's share (weights normalised)


def test_density_is_the_exact_mixture_pdf_and_integrates_to_one():
    dm = Toy1DDataModule(**MIXTURE)
    grid = torch.linspace(-10, 12, 200001, dtype=torch.float64)
    p = dm.density(grid)
    assert p.dtype == torch.float64 and p.shape == grid.shape
    expected = 0.5 * normal_pdf(grid, -2, 0.5) + 0.25 * normal_pdf(grid, 1, 0.3) + 0.25 * normal_pdf(grid, 3, 1.0)
    torch.testing.assert_close(p, expected, rtol=1e-12, atol=1e-300)
    assert abs(torch.trapezoid(p, grid).item() - 1) < 1e-8
    torch.testing.assert_close(dm.log_density(grid[::1000]), expected[::1000].log(), rtol=1e-12, atol=0)


def test_single_gaussian_density_and_shapes():
    dm = Toy1DDataModule(means=[2.0], stds=[0.5])
    x = torch.tensor([[2.0], [2.5], [0.0]])
    p = dm.density(x)
    assert p.shape == (3, 1) and p.dtype == torch.float32
    assert p[0, 0].item() == pytest.approx(1 / (0.5 * math.sqrt(2 * math.pi)), rel=1e-6)
    assert p[1, 0].item() == pytest.approx(math.exp(-0.5) / (0.5 * math.sqrt(2 * math.pi)), rel=1e-6)
    grid = torch.linspace(-3, 7, 10001, dtype=torch.float64)
    assert abs(torch.trapezoid(dm.density(grid), grid).item() - 1) < 1e-8
    assert dm.log_density(torch.tensor([1000.0], dtype=torch.float64)).isfinite().all()  # no underflow to -inf


def test_values_are_not_pixels():
    dm = loaded(means=[5.0], stds=[2.0], seed=0)
    x = dm.images("train")
    assert x.min() < 0 and x.max() > 1  # no [0, 1] clamping or scaling on the way in
    assert torch.equal(dm.to_unit_range(x), x)  # nor on the way out (sample figures, Parzen)
    assert torch.equal(dm.pixel_mean(), x.mean(dim=0))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"scaling": "gcn"}, "data.scaling='gcn' is invalid for toy_1d"),
        ({"shape": [1, 28, 28]}, "data.shape=[1, 28, 28] is invalid for toy_1d"),
        ({"means": [0.0, 1.0], "stds": [1.0]}, "lengths 2, 1, 2"),
        ({"stds": [0.0]}, "every std must be > 0"),
        ({"weights": [-1.0]}, "data.weights=[-1.0] is invalid"),
        ({"num_val": 0}, "data.num_val=0 is invalid"),
        ({"means": ["a"]}, "data.means=['a'] is invalid"),
    ],
)
def test_bad_parameters_are_config_errors(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        Toy1DDataModule(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_yaml_config(tmp_path):
    cfg = compose_train(["data=toy_1d", f"paths.output_dir={tmp_path}"])
    validate_config(cfg)
    assert list(cfg.data.shape) == [1] and list(cfg.model.generator.out_shape) == [1]
    dm = instantiate(cfg.data)
    dm.setup()
    x = dm.images("train")
    assert x.shape == (10000, 1) and abs(x.mean().item() - 2.0) < 0.05 and abs(x.std().item() - 0.5) < 0.02
    other = instantiate(compose_train(["data=toy_1d", "seed=99", f"paths.output_dir={tmp_path}"]).data)
    other.setup()
    assert torch.equal(other.images("train"), x)  # data_seed: 0 in the yaml fixes the points across seeds
