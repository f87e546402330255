"""The paper's figures from a checkpoint:

    python scripts/make_figures.py --ckpt outputs/<run>/checkpoints/last.ckpt --out figures/ [--data-root /path/to/data]

writes figure2.png (samples; last column: the nearest training image of the sample beside it),
figure3.png (linear interpolations between random z pairs) and, when the run's CSV log is found next to
the checkpoint, curves.png (losses, D(x) / D(G(z)), Parzen over training).
Figure 1 (the 1-D toy) is scripts/figure1_toy.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from torchvision.utils import save_image

from gan.callbacks.figures import paper_figures
from gan.errors import GANError
from gan.figures import training_curves
from gan.utils.checkpoints import model_and_data_from_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", default="figures")
    parser.add_argument("--data-root", default=os.environ.get("GAN_DATA_ROOT"))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        model, datamodule, _ = model_and_data_from_checkpoint(args.ckpt, args.data_root)
        datamodule.setup()
    except GANError as error:
        parser.exit(2, f"make_figures: error: {error}\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = paper_figures(model, datamodule, args.rows, args.columns, args.pairs, args.steps, args.seed)
    for name, grid in figures.items():
        save_image(grid, out / f"{name}.png")
        print(out / f"{name}.png")
    log = Path(args.ckpt).resolve().parents[1] / "csv" / "metrics.csv"
    if log.exists():
        print(training_curves(log, out / "curves.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
