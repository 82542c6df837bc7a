"""Figures. Every function takes arrays and returns a matplotlib Figure; none calls plt.show().

`core` holds the shared style and atomic saving; each analysis has a module of its own.
"""
from jaxviz.plot.core import image_grid, save_figure, heatmap_overlay  # noqa: F401
