"""Section 4 of the paper as tests on the 1-D toy: Proposition 1 and Theorem 1.

p_data = N(2, 0.5^2); G(z) = a z + b with z ~ N(0, 1) is analytically invertible, so p_g = N(b, a^2) exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from gan.objectives import GAN2014
from gan.networks import MaxoutDiscriminator

DATA = (2.0, 0.5)
GRID = np.linspace(-8.0, 10.0, 18001)


def train_discriminator(generator_params: tuple[float, float], steps: int = 1500, seed: int = 0) -> torch.nn.Module:
    """Maximise V(D, G) over D for a fixed linear G, with fresh samples every step (no dropout)."""
    torch.manual_seed(seed)
    d = MaxoutDiscriminator([1], hidden_units=(32, 32), pieces=5, input_keep=1.0, hidden_keep=1.0, init_range=None)
    optimizer = torch.optim.Adam(d.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    (mu, sigma), (a, b) = DATA, generator_params
    for _ in range(steps):
        real = mu + sigma * torch.randn(1024, 1)
        fake = a * torch.randn(1024, 1) + b  # G(z)
        loss = GAN2014().discriminator_loss(d(real), d(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return d.eval()


def densities(generator_params):
    p_data = norm.pdf(GRID, *DATA)
    p_g = norm.pdf(GRID, generator_params[1], abs(generator_params[0]))
    return p_data, p_g


def value(d_of_x: np.ndarray, p_data: np.ndarray, p_g: np.ndarray) -> float:
    """V(D, G) = E_pdata[log D(x)] + E_pg[log(1 - D(x))], by numerical integration."""
    eps = 1e-12
    integrand = p_data * np.log(np.clip(d_of_x, eps, 1)) + p_g * np.log(np.clip(1 - d_of_x, eps, 1))
    return float(np.trapezoid(integrand, GRID))


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2
    kl = lambda x, y: float(np.trapezoid(np.where(x > 0, x * np.log(np.maximum(x, 1e-300) / np.maximum(y, 1e-300)), 0), GRID))  # noqa: E731
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def d_on_grid(d: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(d(torch.as_tensor(GRID, dtype=torch.float32).view(-1, 1))).double().numpy()


MISMATCHED = (0.7, 1.4)  # p_g = N(1.4, 0.7^2), overlapping p_data


@pytest.fixture(scope="module")
def trained_against_mismatched_g() -> np.ndarray:
    return d_on_grid(train_discriminator(MISMATCHED))


def test_proposition1_trained_discriminator_matches_the_optimal_one(trained_against_mismatched_g):
    p_data, p_g = densities(MISMATCHED)
    optimal = p_data / (p_data + p_g)
    trained = trained_against_mismatched_g
    support = np.abs(GRID - DATA[0]) <= 2 * DATA[1]
    assert np.abs(trained - optimal)[support].max() < 0.05


def test_theorem1_at_the_global_optimum_d_is_one_half_and_v_is_minus_log4():
    generator = (DATA[1], DATA[0])  # p_g = p_data
    p_data, p_g = densities(generator)
    np.testing.assert_allclose(p_data / (p_data + p_g), 0.5)
    assert value(np.full_like(GRID, 0.5), p_data, p_g) == pytest.approx(-math.log(4), abs=1e-6)
    trained = d_on_grid(train_discriminator(generator, steps=600))
    support = np.abs(GRID - DATA[0]) <= 2 * DATA[1]
    assert np.abs(trained - 0.5)[support].max() < 0.05
    assert value(trained, p_data, p_g) == pytest.approx(-math.log(4), abs=0.01)


@pytest.mark.parametrize("generator", [(0.7, 1.4), (0.3, 3.0), (1.0, 0.0)])
def test_theorem1_gap_to_minus_log4_is_twice_the_jensen_shannon_divergence(generator):
    p_data, p_g = densities(generator)
    optimal = p_data / np.maximum(p_data + p_g, 1e-300)
    c_of_g = value(optimal, p_data, p_g)  # C(G) = max_D V(D, G)
    divergence = jsd(p_data, p_g)
    assert divergence > 0.01
    assert c_of_g - (-math.log(4)) == pytest.approx(2 * divergence, abs=1e-4)


def test_a_trained_discriminator_reaches_max_v(trained_against_mismatched_g):
    p_data, p_g = densities(MISMATCHED)
    best = value(p_data / (p_data + p_g), p_data, p_g)
    reached = value(trained_against_mismatched_g, p_data, p_g)
    assert reached <= best + 1e-6
    assert reached == pytest.approx(best, abs=0.01)
