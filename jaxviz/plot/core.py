"""One visual style for every figure (`STYLE`: pass it as `rc` to `jaxviz.io.save_figure`)
and the shared tile grid and heat-map overlay."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # library figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "image.interpolation": "nearest",
}
DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"
GRAY = "gray"


def new_figure(width: float, height: float):
    with plt.rc_context(STYLE):
        return plt.figure(figsize=(width, height))


def finish_grid(fig, axes, column_titles: Sequence[str], title: str | None = None):
    """Column titles on the first row, no ticks or frames, an optional suptitle; -> fig."""
    for j, name in enumerate(column_titles):
        axes[0, j].set_title(name, fontsize=7, pad=3)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def _tile_norm(a: np.ndarray, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        m = float(np.max(np.abs(a))) or 1.0
        return -m, m
    lo, hi = float(np.min(a)), float(np.max(a))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def image_grid(images, *, titles: Sequence[str] | None = None, ncols: int = 8,
               cmap: str = GRAY, per_tile_norm: bool = True, symmetric: bool = False,
               vmin: float | None = None, vmax: float | None = None,
               suptitle: str | None = None, tile_size: float = 1.0, colorbar: bool = False):
    """A grid of single-channel or RGB tiles. images: (K, H, W) or (K, H, W, C) with C in {1, 3}.

    per_tile_norm: each tile scaled to its own range (symmetric around 0 when `symmetric`);
    otherwise one shared range (vmin/vmax or the data's) and an optional colorbar.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (K, H, W) or (K, H, W, C); got shape {images.shape}")
    k = images.shape[0]
    ncols = max(1, min(ncols, k))
    nrows = int(np.ceil(k / ncols))
    fig = new_figure(tile_size * ncols + (0.6 if colorbar else 0), tile_size * nrows + 0.35 * (suptitle is not None) + 0.2 * (titles is not None) * nrows)
    shared = None if per_tile_norm else (
        (vmin, vmax) if vmin is not None and vmax is not None else _tile_norm(images, symmetric))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= k:
            continue
        tile = images[i]
        if tile.ndim == 3:  # RGB shown as is, clipped to [0, 1] after min-max scaling
            lo, hi = _tile_norm(tile, False)
            im = ax.imshow((tile - lo) / (hi - lo))
        else:
            lo, hi = shared if shared else _tile_norm(tile, symmetric)
            im = ax.imshow(tile, cmap=cmap, vmin=lo, vmax=hi)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7, pad=2)
    if suptitle:
        fig.suptitle(suptitle)
    if colorbar and im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def heatmap_overlay(ax, image, heat, *, cmap: str = "jet", alpha: float = 0.5,
                    vmin: float | None = None, vmax: float | None = None):
    """Draw a grayscale image with a heat map on top into ax. image: (H, W[, C]); heat: (H, W)."""
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap=GRAY if image.ndim == 2 else None)
    im = ax.imshow(np.asarray(heat), cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
    ax.set_axis_off()
    return im
