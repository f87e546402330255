"""The value function V(D, G) as losses on discriminator logits."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from gan.choices import G_LOSSES



def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-V/2: the released code's 0.5 * (BCE(D(x), 1) + BCE(D(G(z)), 0))."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """non_saturating: minimise -log D(G(z)) (section 3's trick, the code's choice).
    minimax: minimise log(1 - D(G(z))), the objective as written in Algorithm 1.
    """
    if kind == "non_saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "minimax":
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    raise ValueError(f"unknown g_loss {kind!r}; choose one of {G_LOSSES}")
