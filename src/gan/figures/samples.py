"""Figure 2 (samples beside their nearest training images) and Figure 3 (walks through z-space)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.utils import make_grid


@torch.no_grad()
def nearest_training_images(samples: torch.Tensor, train: torch.Tensor, chunk: int = 4096,
                            to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """For each sample, the Euclidean nearest image of `train` (both (N, ...)), in pixel space: `to_pixels`
    maps `train` there one chunk at a time (a whole converted copy of CIFAR-10 would be 600 MB), so it must
    treat each image on its own; `samples` are in pixel space already. Returns the neighbours in pixel space."""
    to_pixels = to_pixels or (lambda images: images)
    flat = samples.flatten(1).float()
    best_dist = torch.full((len(flat),), float("inf"), device=flat.device)
    best_index = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
    for start in range(0, len(train), chunk):
        block = to_pixels(train[start : start + chunk]).flatten(1).float().to(flat.device)
        dist, index = torch.cdist(flat, block).min(dim=1)
        closer = dist < best_dist
        best_dist = torch.where(closer, dist, best_dist)
        best_index = torch.where(closer, index + start, best_index)
    return to_pixels(train[best_index.to(train.device)]).to(samples.device)


def nearest_neighbour_grid(samples: torch.Tensor, train: torch.Tensor, columns: int, border: float = 1.0,
                           to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """Figure 2: rows of `columns` samples; an extra last column holds the training image nearest to the
    row's last sample, framed so it stands out. Showing the model does not just copy its training set.
    `samples` are pixels in [0, 1]; `to_pixels` takes `train` there (see nearest_training_images)."""
    rows = len(samples) // columns
    samples = samples[: rows * columns]
    neighbours = nearest_training_images(samples[columns - 1 :: columns], train, to_pixels=to_pixels)
    framed = torch.nn.functional.pad(neighbours[..., 1:-1, 1:-1], (1, 1, 1, 1), value=border)
    images = torch.cat([samples.view(rows, columns, *samples.shape[1:]), framed.unsqueeze(1)], dim=1)
    return make_grid(images.flatten(0, 1).cpu(), nrow=columns + 1, padding=2, pad_value=0.5)


@torch.no_grad()
def interpolation_grid(generate, z_start: torch.Tensor, z_end: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Figure 3: each row walks linearly from z_start[i] to z_end[i] in `steps` images.
    `generate` maps a (n, dim) noise batch to images in [0, 1]."""
    weights = torch.linspace(0, 1, steps, device=z_start.device).view(1, steps, 1)
    z = (1 - weights) * z_start.unsqueeze(1) + weights * z_end.unsqueeze(1)
    images = generate(z.flatten(0, 1))
    return make_grid(images.cpu(), nrow=steps, padding=2, pad_value=1.0)
