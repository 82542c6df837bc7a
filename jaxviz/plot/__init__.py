"""Figures. Every function takes arrays and returns a matplotlib Figure; none calls plt.show().

`core` holds the shared style; each analysis has a module of its own. Nothing here writes
files: `jaxviz.io.save_figure(fig, path, rc=jaxviz.plot.STYLE)` does.
"""
from jaxviz.plot.core import STYLE, heatmap_overlay, image_grid  # noqa: F401
