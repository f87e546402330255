"""Layers of the 2014 code (pylearn2) that PyTorch does not ship: maxout, maxout-conv, max-norm."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def uniform_init_(module: nn.Module, init_range: float | None, bias: float = 0.0) -> None:
    """pylearn2's `irange`: weights ~ U(-r, r), biases constant. `None` keeps PyTorch's default init."""
    if init_range is None:
        return
    nn.init.uniform_(module.weight, -init_range, init_range)
    if module.bias is not None:
        nn.init.constant_(module.bias, bias)


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al., 2013): the max over `pieces` affine pieces per unit.

    `max_col_norm` is pylearn2's constraint on the norm of each unit's incoming weights; it is enforced
    by `apply_max_norm` after every optimizer step, not inside forward.
    """

    def __init__(
        self,
        in_features: int,
        units: int,
        pieces: int,
        init_range: float | None = None,
        max_col_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.units, self.pieces, self.max_col_norm = units, pieces, max_col_norm
        self.linear = nn.Linear(in_features, units * pieces)
        uniform_init_(self.linear, init_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=-1)

    @torch.no_grad()
    def renorm_(self) -> None:
        if self.max_col_norm is not None:
            _renorm_rows_(self.linear.weight, self.max_col_norm, row_dims=1)


class MaxoutConv2d(nn.Module):
    """Convolutional maxout (pylearn2's MaxoutConvC01B): conv to channels*pieces, max over pieces, max-pool."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        pieces: int,
        kernel_size: int,
        padding: int = 0,
        pool_shape: int = 1,
        pool_stride: int = 1,
        init_range: float | None = None,
        max_kernel_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.channels, self.pieces, self.max_col_norm = channels, pieces, max_kernel_norm
        self.pool_shape, self.pool_stride = pool_shape, pool_stride
        self.conv = nn.Conv2d(in_channels, channels * pieces, kernel_size, padding=padding)
        uniform_init_(self.conv, init_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        n, _, height, width = h.shape
        h = h.view(n, self.channels, self.pieces, height, width).amax(dim=2)
        if self.pool_shape > 1:
            h = F.max_pool2d(h, self.pool_shape, self.pool_stride)
        return h

    @torch.no_grad()
    def renorm_(self) -> None:
        if self.max_col_norm is not None:
            _renorm_rows_(self.conv.weight, self.max_col_norm, row_dims=3)


class MaxNormLinear(nn.Linear):
    """A linear layer whose incoming weight vector per output unit is kept at norm <= max_col_norm."""

    def __init__(self, in_features: int, out_features: int, max_col_norm: float | None = None) -> None:
        super().__init__(in_features, out_features)
        self.max_col_norm = max_col_norm

    @torch.no_grad()
    def renorm_(self) -> None:
        if self.max_col_norm is not None:
            _renorm_rows_(self.weight, self.max_col_norm, row_dims=1)


def _renorm_rows_(weight: torch.Tensor, max_norm: float, row_dims: int) -> None:
    # One row of a PyTorch weight is one column of pylearn2's W: the weights into one unit (or filter), `row_dims`
    # dimensions. Leading dimensions beyond the rows' (a fused model's members, gan.fused) are more rows.
    rows = weight.reshape(-1, *weight.shape[weight.dim() - row_dims :])
    weight.copy_(torch.renorm(rows, p=2, dim=0, maxnorm=max_norm).view_as(weight))


def apply_max_norm(network: nn.Module) -> None:
    """Project every constrained layer of `network` back onto its max-norm ball (call after each step)."""
    for module in network.modules():
        if isinstance(module, (Maxout, MaxoutConv2d, MaxNormLinear)):
            module.renorm_()


def has_max_norm(network: nn.Module) -> bool:
    return any(getattr(m, "max_col_norm", None) is not None for m in network.modules())
