"""The paper's figures as functions (used by scripts/make_figures.py and the PaperFigures callback)."""

from gan.figures.curves import training_curves
from gan.figures.samples import interpolation_grid, nearest_neighbour_grid

__all__ = ["interpolation_grid", "nearest_neighbour_grid", "training_curves"]
