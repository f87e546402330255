"""A 1-D data distribution for the paper's Figure 1 and for checking Prop. 1 (D* = p_data / (p_data + p_g)).

p_data is a Gaussian or a mixture of Gaussians with known parameters, so `density(x)` is exact. The three
splits are fixed draws from it; the values are points on a line, not pixels, so no image scaling applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gan.data.base import InMemoryImageDataModule
from gan.errors import ConfigError


def _numbers(key: str, values: Sequence[float]) -> list[float]:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(
            f"data.{key}={values!r} is invalid: must be a list of numbers (e.g. data.{key}=[0.0])"
        ) from None
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"data.{key}={values!r} is invalid: must be a non-empty list of finite numbers")
    return numbers


class Toy1DDataModule(InMemoryImageDataModule):
    """p_data = sum_k weights[k] * N(means[k], stds[k]^2) on the real line (weights are normalised to sum 1).

    `num_train`, `num_val`, `num_test` points are drawn once, with `data_seed` (None: `seed`), as tensors of
    shape (N, 1). Scaling is fixed to `unit` and `to_unit_range` is the identity: values are not pixels.
    """

    name = "toy_1d"

    def __init__(
        self,
        means: Sequence[float] = (0.0,),
        stds: Sequence[float] = (1.0,),
        weights: Sequence[float] | None = None,
        num_train: int = 10000,
        num_val: int = 2000,
        num_test: int = 2000,
        data_seed: int | None = None,
        shape: Sequence[int] = (1,),
        scaling: str = "unit",
        **kwargs,
    ) -> None:
        if scaling != "unit":
            raise ConfigError(
                f"data.scaling={scaling!r} is invalid for toy_1d: its values are points on a line, not pixels "
                "(use data.scaling=unit)"
            )
        if tuple(shape) != (1,):
            raise ConfigError(f"data.shape={list(shape)} is invalid for toy_1d: must be [1] (one number per point)")
        super().__init__(shape=shape, scaling=scaling, **kwargs)
        means, stds = _numbers("means", means), _numbers("stds", stds)
        weights = [1.0] * len(means) if weights is None else _numbers("weights", weights)
        if not len(means) == len(stds) == len(weights):
            raise ConfigError(
                f"data.means, data.stds and data.weights have lengths {len(means)}, {len(stds)}, {len(weights)}; "
                "give one mean, std and weight per mixture component"
            )
        if min(stds) <= 0:
            raise ConfigError(f"data.stds={stds} is invalid: every std must be > 0 (e.g. data.stds=[0.5])")
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"data.weights={weights} is invalid: must be >= 0 with a positive sum (e.g. [1.0])")
        for key, n in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"data.{key}={n!r} is invalid: must be an integer >= 1 (e.g. data.{key}=1000)")
        total = sum(weights)
        self.means = torch.tensor(means, dtype=torch.float64)
        self.stds = torch.tensor(stds, dtype=torch.float64)
        self.weights = torch.tensor([w / total for w in weights], dtype=torch.float64)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.data_seed = data_seed

    def prepare_data(self) -> None:
        pass  # nothing on disk

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n independent draws from p_data, shape (n, 1), float32."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, generator=generator, dtype=torch.float64)
        return (self.means[component] + self.stds[component] * noise).float().unsqueeze(1)

    def load_splits(self) -> dict[str, torch.Tensor]:
        seed = self.seed if self.data_seed is None else self.data_seed
        generator = torch.Generator().manual_seed(int(seed or 0))
        return {split: self.sample(n, generator) for split, n in self.sizes.items()}

    def _log_density64(self, x: torch.Tensor) -> torch.Tensor:
        x64 = x.to(torch.float64).unsqueeze(-1)  # (..., 1) against the K components
        means, stds, weights = (t.to(x.device) for t in (self.means, self.stds, self.weights))
        z = (x64 - means) / stds
        return torch.logsumexp(weights.log() - stds.log() - 0.5 * math.log(2 * math.pi) - 0.5 * z**2, dim=-1)

    def _out_dtype(self, x: torch.Tensor) -> torch.dtype:
        return x.dtype if x.is_floating_point() else torch.get_default_dtype()

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p_data(x), elementwise (any shape, e.g. (N, 1) or (N,)); float64 inside, x's float dtype out."""
        return self._log_density64(x).to(self._out_dtype(x))

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """p_data(x), elementwise, exact (the mixture's pdf); float64 inside, x's float dtype out."""
        return self._log_density64(x).exp().to(self._out_dtype(x))

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        return images  # points on a line, not pixels: nothing to undo and nothing to clamp
