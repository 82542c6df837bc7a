"""One image file's maps drawn over the original colour image (`jaxviz attribute --image`)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxviz.plot.attribution import tile_range
from jaxviz.plot.core import DIVERGING, finish_grid, new_figure


def _resized(m: np.ndarray, size) -> np.ndarray:
    """A (h, w) map bilinearly resized to size (H, W), for drawing over the original."""
    from PIL import Image  # noqa: PLC0415 (matplotlib's dependency)
    if m.shape == tuple(size):
        return m
    img = Image.fromarray(np.asarray(m, np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float32)


def overlay_figure(original, maps: Mapping[str, np.ndarray], *, signed: bool = True,
                   label: str = "", alpha: float = 0.5):
    """The original image, then each map over it. original: (H, W, 3) uint8 at its own
    size; maps: {title: (h, w)} at the model's input size (resized to the original's).
    signed: a diverging colormap symmetric about 0, else a sequential one; each tile's
    range is written under it. label: text under the original (e.g. the predicted class)."""
    original = np.asarray(original)
    ncol = 1 + len(maps)
    fig = new_figure(2.2 * ncol, 2.6)
    axes = fig.subplots(1, ncol, squeeze=False)
    axes[0, 0].imshow(original)
    axes[0, 0].set_title("image", fontsize=8)
    axes[0, 0].set_xlabel(label, fontsize=7)
    for ax, (title, m) in zip(axes[0, 1:], maps.items()):
        m = _resized(np.asarray(m, np.float32), original.shape[:2])
        lo, hi, text = tile_range(m, signed)
        ax.imshow(original)
        ax.imshow(m, cmap=DIVERGING if signed else "jet", alpha=alpha, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(text, fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish_grid(fig, axes, [], None)
