"""The prior p_z the generator maps from."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan.choices import NOISE_DISTRIBUTIONS



class NoiseSampler(nn.Module):
    """Draws z of shape (n, dim): uniform on [-sqrt(3), sqrt(3)] (unit variance, the MNIST code) or N(0, 1).

    A module (with no parameters) so that its samples land on the model's device.
    """

    def __init__(self, dim: int = 100, distribution: str = "uniform") -> None:
        super().__init__()
        if distribution not in NOISE_DISTRIBUTIONS:
            raise ValueError(f"unknown noise distribution {distribution!r}; choose one of {NOISE_DISTRIBUTIONS}")
        self.dim, self.distribution = dim, distribution
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    def forward(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`generator` (optional) fixes the draw; it may live on another device than the model."""
        device = generator.device if generator is not None else self._device_anchor.device
        if self.distribution == "gaussian":
            z = torch.randn(n, self.dim, device=device, generator=generator)
        else:
            half_width = math.sqrt(3.0)
            z = torch.rand(n, self.dim, device=device, generator=generator).mul_(2 * half_width).sub_(half_width)
        return z.to(self._device_anchor.device)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, distribution={self.distribution}"
