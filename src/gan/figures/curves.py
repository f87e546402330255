"""Training curves from a run's CSV log: losses, D(x) and D(G(z)), and the Parzen estimate over training."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from gan.figures.plotting import save_figure

PANELS = (
    ("losses", ("train/d_loss", "train/g_loss")),
    ("discriminator outputs", ("train/d_real", "train/d_fake", "val/d_real", "val/d_fake")),
    ("Parzen log-likelihood (nats)", ("val/parzen_ll",)),
)


def read_metrics(csv_path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """{metric: [(step, value), ...]} from Lightning's CSVLogger file (blank cells skipped)."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                series.setdefault(key, []).append((float(row["step"]), float(value)))
    return series


def training_curves(csv_path: str | Path, out_path: str | Path) -> Path:
    """One PNG with a panel per group of PANELS that the log contains."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(csv_path)
    panels = [(title, [k for k in keys if k in series]) for title, keys in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        raise ValueError(f"{csv_path} holds none of the metrics {[k for _, ks in PANELS for k in ks]}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            steps, values = zip(*[(s, v) for s, v in series[key] if math.isfinite(v)])
            ax.plot(steps, values, label=key, marker="o" if key.startswith("val/") else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("training batch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, out_path)
