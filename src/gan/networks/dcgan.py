"""DCGAN (Radford et al., 2016): a transposed-conv generator and a strided-conv discriminator, both sized from
the image shape.

Every stage doubles (G) or halves (D) the spatial size with a 4x4, stride-2, padding-1 convolution, so an
image side must be a start size of 4..7 times a power of two: 28 = 7 * 2^2, 32 = 4 * 2^3, 48 = 6 * 2^3,
64 = 4 * 2^4. Widths double per stage away from the image: `base_channels` next to it, `base_channels *
2^(stages-1)` at the start map (base 64 at 64x64 gives the paper's 512-256-128-64 with half its widths).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as spectral_norm_

from gan.errors import ConfigError
from gan.networks.mlp import _activation

MIN_START, MAX_START = 4, 7


def dcgan_stages(side: int) -> tuple[int, int]:
    """(stages, start size) with side = start * 2^stages, start in 4..7 and at least one stage; None if none."""
    stages = 0
    while side % 2 == 0 and side // 2 >= MIN_START:
        side, stages = side // 2, stages + 1
    return (stages, side) if stages >= 1 and MIN_START <= side <= MAX_START else None


def supported_sides(limit: int = 128) -> list[int]:
    return [s for s in range(1, limit + 1) if dcgan_stages(s) is not None]


def _plan(shape: Sequence[int], key: str) -> tuple[int, int, int, int]:
    """(channels, stages, start height, start width) of an image shape; one ConfigError line otherwise."""
    if len(shape) != 3:
        raise ConfigError(f"{key}={list(shape)} is invalid: the DCGAN networks take images shaped [channels, height, width]")
    channels, height, width = (int(s) for s in shape)
    plans = dcgan_stages(height), dcgan_stages(width)
    if None in plans or plans[0][0] != plans[1][0]:
        sides = ", ".join(map(str, supported_sides()))
        raise ConfigError(
            f"the DCGAN networks cannot make {height}x{width} images: each side must be 4..7 times the same power "
            f"of two ({sides}, ...); resize the data (data.image_size) or pick another network"
        )
    return channels, plans[0][0], plans[0][1], plans[1][1]


def dcgan_init_(module: nn.Module) -> None:
    """The paper's initialisation: conv/linear weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """noise -> linear to a (base * 2^(stages-1)) x h0 x w0 map -> [transposed conv stride 2, batch norm, ReLU]
    per stage -> a last transposed conv to the image's channels -> `output_activation` (tanh for data in
    [-1, 1], sigmoid for [0, 1], linear for any)."""

    def __init__(
        self,
        noise_dim: int,
        out_shape: Sequence[int] = (1, 28, 28),
        base_channels: int = 64,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        channels, stages, h0, w0 = _plan(out_shape, "model.generator.out_shape")
        self.noise_dim, self.out_shape = noise_dim, tuple(int(s) for s in out_shape)
        self.output_activation = output_activation
        width = base_channels * 2 ** (stages - 1)
        self.start_shape = (width, h0, w0)
        self.project = nn.Sequential(
            nn.Linear(noise_dim, width * h0 * w0, bias=False),
            nn.Unflatten(1, self.start_shape),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU()]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), _activation(output_activation)]
        self.upsample = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z))


class DCGANDiscriminator(nn.Module):
    """[conv 4x4 stride 2, batch norm (not on the first), LeakyReLU(0.2)] per stage down to a 4..7 pixel map,
    then a linear layer to one logit per image, shape (N,). `spectral_norm` wraps every conv and the linear in
    torch's spectral-norm parametrization (Miyato et al., 2018); batch norm is then off unless asked for
    (`batch_norm=true`), as in SNGAN."""

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        base_channels: int = 64,
        negative_slope: float = 0.2,
        spectral_norm: bool = False,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__()
        channels, stages, h0, w0 = _plan(in_shape, "model.discriminator.in_shape")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.spectral_norm = bool(spectral_norm)
        self.batch_norm = (not spectral_norm) if batch_norm is None else bool(batch_norm)
        layers: list[nn.Module] = []
        width_in, width = channels, base_channels
        for stage in range(stages):
            layers.append(nn.Conv2d(width_in, width, 4, 2, 1, bias=stage == 0 or not self.batch_norm))
            if stage > 0 and self.batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(negative_slope))
            width_in, width = width, width * 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(width_in * h0 * w0, 1)
        dcgan_init_(self)
        if self.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    spectral_norm_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)
