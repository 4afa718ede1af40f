"""Figures and tables that show results and why an image was flagged."""

from reconad.report.plots import save_extras_grid, save_heatmap, save_roc

__all__ = ["save_extras_grid", "save_heatmap", "save_roc"]
