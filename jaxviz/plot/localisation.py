"""Localisation figures: attribution maps drawn against ground-truth masks.

Arrays in, a matplotlib Figure out; the experiment computes maps and scores.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxviz.plot.attribution import SEQ_MAP
from jaxviz.plot.core import DIVERGING, GRAY, finish_grid, new_figure

MASK_COLOR = "lime"
POINT_COLOR = "cyan"


def mask_overlay_figure(images, masks, columns: Mapping[str, np.ndarray], *, labels=None,
                        title: str | None = None):
    """Rows = images; columns = the image, then one map per method, each with the mask's
    outline and a cross on the map's maximum (the pointing game's guess).

    images: (K, H, W, C); masks: (K, H, W) bool; columns: {name: (K, H, W) map}. Each map
    is scaled on its own: diverging around 0 where it has negative values, else from 0."""
    images, masks = np.asarray(images, np.float32), np.asarray(masks, bool)
    k = images.shape[0]
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks must be (K, H, W) = {images.shape[:3]}; got {masks.shape}")
    for name, m in columns.items():
        if np.shape(m) != masks.shape:
            raise ValueError(f"columns[{name!r}] must be {masks.shape}; got {np.shape(m)}")
    ncol = 1 + len(columns)
    fig = new_figure(1.05 * ncol, 1.05 * k + 0.4 + 0.2 * bool(title))
    axes = fig.subplots(k, ncol, squeeze=False)
    for i in range(k):
        img = images[i, ..., 0] if images.shape[-1] == 1 else images[i]
        axes[i, 0].imshow(img, cmap=GRAY if img.ndim == 2 else None)
        _outline(axes[i, 0], masks[i])
        if labels is not None:
            axes[i, 0].set_ylabel(str(labels[i]), rotation=0, labelpad=8)
        for j, maps in enumerate(columns.values(), start=1):
            _map_tile(axes[i, j], np.asarray(maps[i], np.float32), masks[i])
    return finish_grid(fig, axes, ["image + mask", *columns], title)


def _outline(ax, mask) -> None:
    ax.contour(mask.astype(np.float32), levels=[0.5], colors=MASK_COLOR, linewidths=0.6)


def _map_tile(ax, m, mask) -> None:
    top = float(np.abs(m).max()) or 1.0
    if m.min() < 0:
        ax.imshow(m, cmap=DIVERGING, vmin=-top, vmax=top)
    else:
        ax.imshow(m, cmap=SEQ_MAP, vmin=0, vmax=top)
    _outline(ax, mask)
    y, x = np.unravel_index(int(np.argmax(m)), m.shape)
    ax.plot([x], [y], marker="x", color=POINT_COLOR, markersize=4, markeredgewidth=1)
