"""Fully connected generators and discriminators: the paper's, and the popular PyTorch-GAN pair."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gan.networks.layers import MaxNormLinear, Maxout, uniform_init_

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLPGenerator(nn.Module):
    """The paper's fully connected generator (MNIST, TFD, CIFAR-10 fc): noise -> hidden layers -> image.

    Weights ~ U(-init_range, init_range), biases `hidden_bias` (pylearn2 style). With a sigmoid output and
    `output_bias_from_data`, the output bias starts at the logit of the training pixel means, so the very
    first samples already have the data's average brightness (the released MNIST code does this).
    """

    def __init__(
        self,
        noise_dim: int,
        out_shape: Sequence[int],
        hidden_sizes: Sequence[int] = (1200, 1200),
        hidden_activations: Sequence[str] = ("relu", "relu"),
        hidden_bias: Sequence[float] | None = None,
        output_activation: str = "sigmoid",
        init_range: float | None = 0.05,
        output_init_range: float | None = None,
        output_bias_from_data: bool = True,
        max_col_norm: float | None = None,
    ) -> None:
        super().__init__()
        if len(hidden_activations) != len(hidden_sizes):
            raise ValueError("hidden_activations needs one entry per hidden layer")
        hidden_bias = list(hidden_bias) if hidden_bias is not None else [0.0] * len(hidden_sizes)
        self.noise_dim, self.out_shape = noise_dim, tuple(out_shape)
        self.output_activation = output_activation
        self.output_bias_from_data = output_bias_from_data and output_activation == "sigmoid"
        layers: list[nn.Module] = []
        width = noise_dim
        for size, activation, bias in zip(hidden_sizes, hidden_activations, hidden_bias):
            linear = MaxNormLinear(width, size, max_col_norm)
            uniform_init_(linear, init_range, bias)
            layers += [linear, _activation(activation)]
            width = size
        self.output = MaxNormLinear(width, math.prod(self.out_shape), max_col_norm)
        uniform_init_(self.output, output_init_range if output_init_range is not None else init_range)
        self.net = nn.Sequential(*layers, self.output, _activation(output_activation))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor) -> None:
        """Start the output at the data's mean image (no-op unless `output_bias_from_data`)."""
        if self.output_bias_from_data:
            mean = pixel_mean.reshape(-1).to(self.output.bias).clamp(1e-7, 1 - 1e-7)
            self.output.bias.copy_(torch.logit(mean))


class MaxoutDiscriminator(nn.Module):
    """The paper's discriminator: dropout, maxout layers, one logit.

    Dropout keeps each input with `input_keep` and each later layer's input with `hidden_keep`
    (pylearn2's include probabilities, inverted scaling). Returns logits; sigmoid is in the loss.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden_units: Sequence[int] = (240, 240),
        pieces: int = 5,
        input_keep: float = 0.8,
        hidden_keep: float = 0.5,
        init_range: float | None = 0.005,
        max_col_norm: float | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(1 - input_keep)]
        width = math.prod(in_shape)
        for units in hidden_units:
            layers += [Maxout(width, units, pieces, init_range, max_col_norm), nn.Dropout(1 - hidden_keep)]
            width = units
        output = MaxNormLinear(width, 1, max_col_norm)
        uniform_init_(output, init_range)
        self.in_shape = tuple(in_shape)
        self.net = nn.Sequential(*layers, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class PyTorchGANGenerator(nn.Module):
    """eriklindernoren/PyTorch-GAN `gan.py` generator: LeakyReLU MLP with BatchNorm, Tanh output in [-1, 1].

    PyTorch-GAN passes 0.8 as BatchNorm1d's second argument, which is `eps` (it meant momentum); the
    default keeps that quirk so results match the popular code, and `batchnorm_eps=1e-5` fixes it.
    """

    def __init__(
        self,
        noise_dim: int,
        out_shape: Sequence[int],
        hidden_sizes: Sequence[int] = (128, 256, 512, 1024),
        negative_slope: float = 0.2,
        batchnorm_eps: float = 0.8,
    ) -> None:
        super().__init__()
        self.noise_dim, self.out_shape = noise_dim, tuple(out_shape)
        layers: list[nn.Module] = []
        width = noise_dim
        for i, size in enumerate(hidden_sizes):
            layers.append(nn.Linear(width, size))
            if i > 0:  # the first block has no BatchNorm
                layers.append(nn.BatchNorm1d(size, batchnorm_eps))
            layers.append(nn.LeakyReLU(negative_slope))
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, math.prod(self.out_shape)), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class PyTorchGANDiscriminator(nn.Module):
    """eriklindernoren/PyTorch-GAN `gan.py` discriminator, returning logits instead of sigmoid outputs."""

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden_sizes: Sequence[int] = (512, 256),
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.LeakyReLU(negative_slope)]
            width = size
        self.in_shape = tuple(in_shape)
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
