"""Attribution figures: the method comparison grid and the randomization sanity check.

Arrays in, matplotlib Figures out; the attribution stage (jaxviz.report) computes the maps.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxviz.plot.core import DIVERGING, GRAY, finish_grid, heatmap_overlay, new_figure

SEQ_MAP = "hot"


def _gray(image):
    image = np.asarray(image, np.float32)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def comparison_figure(images, columns: Mapping[str, np.ndarray], *, labels=None,
                      overlay: tuple[str, ...] = ("Grad-CAM",), title: str | None = None):
    """Rows = images, columns = the image then one map per method.

    images: (K, H, W, C); columns: {name: (K, H, W) map}. Each tile has its own scale:
    maps with negative values use a diverging colormap symmetric around 0, others a
    sequential one from 0; names in `overlay` are drawn over the image.
    """
    images = np.asarray(images)
    k = images.shape[0]
    for name, m in columns.items():
        if np.shape(m)[:1] != (k,) or np.ndim(m) != 3:
            raise ValueError(f"columns[{name!r}] must be ({k}, H, W); got shape {np.shape(m)}")
    ncol = 1 + len(columns)
    fig = new_figure(1.05 * ncol, 1.05 * k + 0.4 + 0.2 * bool(title))
    axes = fig.subplots(k, ncol, squeeze=False)
    for i in range(k):
        img = _gray(images[i])
        axes[i, 0].imshow(img, cmap=GRAY if img.ndim == 2 else None)
        if labels is not None:
            axes[i, 0].set_ylabel(str(labels[i]), rotation=0, labelpad=8)
        for j, (name, maps) in enumerate(columns.items(), start=1):
            m = np.asarray(maps[i], np.float32)
            top = float(np.abs(m).max()) or 1.0
            if name in overlay:
                heatmap_overlay(axes[i, j], img, m, cmap="jet", vmin=min(0.0, float(m.min())),
                                vmax=top)
            elif m.min() < 0:
                axes[i, j].imshow(m, cmap=DIVERGING, vmin=-top, vmax=top)
            else:  # min..max: an unsigned map's offset (RISE's mean mask weight) shows nothing
                axes[i, j].imshow(m, cmap=SEQ_MAP, vmin=float(m.min()), vmax=top)
    return finish_grid(fig, axes, ["image", *columns], title)


def randomization_figure(result: Mapping, *, title: str | None = None):
    """Line plot of `cascading_randomization`'s result: rank correlation vs. layers
    re-initialised (cumulative, from the top)."""
    layers = list(result["layers"])
    fig = new_figure(0.55 * len(layers) + 2.2, 2.4)
    ax = fig.subplots()
    xs = np.arange(len(layers) + 1)
    for name, values in result.items():
        if name != "layers":
            ax.plot(xs, [1.0, *np.asarray(values)], marker="o", label=name)
    ax.set_xticks(xs, ["none", *layers], rotation=30, ha="right")
    ax.set_xlabel("re-initialised down to layer")
    ax.set_ylabel("rank correlation with trained maps")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(frameon=False)
    ax.set_title(title or "model randomization (Adebayo et al. 2018)")
    return fig
