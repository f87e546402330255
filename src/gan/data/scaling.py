"""Pixel scalings: how images in [0, 1] are presented to the networks, and back."""

from __future__ import annotations

import torch

from gan.choices import SCALINGS



def scale(images: torch.Tensor, scaling: str, gcn_scale: float = 55.0) -> torch.Tensor:
    """unit: [0, 1] as stored; symmetric: [-1, 1] (for Tanh generators);
    gcn: per-image global contrast normalisation (subtract the image mean, divide by its norm, times
    `gcn_scale`), as the CIFAR-10 code does with pylearn2's scale=55."""
    if scaling == "unit":
        return images
    if scaling == "symmetric":
        return images * 2 - 1
    if scaling == "gcn":
        flat = images.flatten(1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        norms = centred.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return (centred / norms * gcn_scale).view_as(images)
    raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS}")


def to_unit_range(images: torch.Tensor, scaling: str) -> torch.Tensor:
    """Back to [0, 1] pixels: exact for unit and symmetric; for gcn (not invertible) a per-image min-max
    stretch, good for looking at but not for measuring."""
    if scaling == "unit":
        return images.clamp(0, 1)
    if scaling == "symmetric":
        return ((images + 1) / 2).clamp(0, 1)
    flat = images.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-8)).view_as(images)


def is_invertible(scaling: str) -> bool:
    return scaling in ("unit", "symmetric")
