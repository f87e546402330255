"""The paper's convolutional CIFAR-10 pair: a transposed-conv generator and a maxout-conv discriminator."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from gan.networks.layers import MaxNormLinear, Maxout, MaxoutConv2d, uniform_init_
from gan.networks.mlp import _activation


class ConvTransposeGenerator(nn.Module):
    """Fully connected layers up to a feature map, then one transposed convolution to the image.

    The released CIFAR-10 code: 8000 ReLU, 8000 sigmoid reshaped to 80x10x10, a 5x5 stride-3 transposed
    convolution to 3x32x32, a linear output with one bias per output position (not per channel).
    """

    def __init__(
        self,
        noise_dim: int,
        out_shape: Sequence[int] = (3, 32, 32),
        hidden_sizes: Sequence[int] = (8000, 8000),
        hidden_activations: Sequence[str] = ("relu", "sigmoid"),
        feature_shape: Sequence[int] = (80, 10, 10),
        kernel_size: int = 5,
        stride: int = 3,
        init_range: float | None = 0.05,
        output_activation: str = "linear",
    ) -> None:
        super().__init__()
        if hidden_sizes[-1] != math.prod(feature_shape):
            raise ValueError(f"the last hidden layer ({hidden_sizes[-1]}) must have prod(feature_shape) units")
        self.noise_dim, self.out_shape, self.feature_shape = noise_dim, tuple(out_shape), tuple(feature_shape)
        layers: list[nn.Module] = []
        width = noise_dim
        for size, activation in zip(hidden_sizes, hidden_activations):
            linear = nn.Linear(width, size)
            uniform_init_(linear, init_range)
            layers += [linear, _activation(activation)]
            width = size
        self.fc = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(feature_shape[0], out_shape[0], kernel_size, stride=stride, bias=False)
        uniform_init_(self.deconv, init_range)
        produced = (feature_shape[1] - 1) * stride + kernel_size
        if (produced, produced) != tuple(out_shape[1:]):
            raise ValueError(f"the transposed conv makes {produced}x{produced} images, not {out_shape[1:]}")
        self.position_bias = nn.Parameter(torch.zeros(self.out_shape))
        self.output_activation = _activation(output_activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.fc(z).view(z.shape[0], *self.feature_shape)
        return self.output_activation(self.deconv(features) + self.position_bias)


class MaxoutConvDiscriminator(nn.Module):
    """Maxout-conv layers, a maxout layer, one logit; dropout as in the fully connected discriminator."""

    def __init__(
        self,
        in_shape: Sequence[int] = (3, 32, 32),
        conv_layers: Sequence[Mapping] = (
            {"channels": 32, "pieces": 2, "kernel_size": 8, "padding": 4, "pool_shape": 4, "pool_stride": 2},
            {"channels": 32, "pieces": 2, "kernel_size": 8, "padding": 3, "pool_shape": 4, "pool_stride": 2},
            {"channels": 192, "pieces": 2, "kernel_size": 5, "padding": 3, "pool_shape": 2, "pool_stride": 2},
        ),
        hidden_units: int = 500,
        pieces: int = 5,
        input_keep: float = 0.8,
        hidden_keep: float = 0.5,
        init_range: float | None = 0.005,
        max_col_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        layers: list[nn.Module] = [nn.Dropout(1 - input_keep)]
        channels = in_shape[0]
        for i, spec in enumerate(conv_layers):
            if i > 0:
                layers.append(nn.Dropout(1 - hidden_keep))
            layers.append(MaxoutConv2d(channels, init_range=init_range, max_kernel_norm=max_col_norm, **spec))
            channels = spec["channels"]
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            width = self.features(torch.zeros(1, *in_shape)).shape[1]
        self.head = nn.Sequential(
            nn.Dropout(1 - hidden_keep),
            Maxout(width, hidden_units, pieces, init_range, max_col_norm),
            nn.Dropout(1 - hidden_keep),
            MaxNormLinear(hidden_units, 1, max_col_norm),
        )
        uniform_init_(self.head[-1], init_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)
