"""Figure 1: the 1-D picture of adversarial training: p_data, p_g and D(x) on a line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import gaussian_kde

from gan.figures.plotting import save_figure


@dataclass
class ToyStage:
    title: str
    p_g: np.ndarray  # density of G(z) on the grid
    d: np.ndarray  # D(x) on the grid


@torch.no_grad()
def toy_stage(model, xs: np.ndarray, title: str, num_samples: int = 20000, seed: int = 0) -> ToyStage:
    """p_g by a Gaussian KDE of G's samples, D(x) = sigmoid(logit) with dropout off."""
    samples = model.sample(num_samples, generator=torch.Generator().manual_seed(seed)).flatten().double().cpu().numpy()
    was_training = model.discriminator.training
    model.discriminator.eval()
    grid = torch.as_tensor(xs, dtype=torch.float32, device=model.device).view(-1, 1)
    d = torch.sigmoid(model.discriminator(grid)).double().cpu().numpy()
    model.discriminator.train(was_training)
    return ToyStage(title, gaussian_kde(samples)(xs), d)


def figure1(stages: Sequence[ToyStage], xs: np.ndarray, p_data: np.ndarray, out_path: str | Path) -> Path:
    """One PNG, a panel per stage: p_data (black, dotted), p_g (green), D(x) (blue, dashed), as in the paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.2), sharey=True, squeeze=False)
    top = max(1.05, float(p_data.max()) * 1.1)
    for ax, stage in zip(axes[0], stages):
        ax.plot(xs, p_data, "k:", lw=2, label="p_data")
        ax.plot(xs, stage.p_g, "g-", lw=1.5, label="p_g")
        ax.plot(xs, stage.d, "b--", lw=1.5, label="D(x)")
        ax.axhline(0.5, color="0.8", lw=0.8)
        ax.set_ylim(0, top)
        ax.set_title(stage.title, fontsize=10)
        ax.set_xlabel("x")
    axes[0][0].legend(fontsize=8, loc="upper left")
    return save_figure(fig, out_path)
