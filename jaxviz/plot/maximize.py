"""Figures for activation maximization: arrays in, a Figure out. The report's maximize stage
runs the ascents (jaxviz.maximize) and saves these figures."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxviz.plot.core import GRAY, image_grid, new_figure


def _range_kw(vrange):
    """vrange (lo, hi): one shared scale (the input range); None: each tile its own."""
    return {} if vrange is None else dict(per_tile_norm=False, vmin=vrange[0], vmax=vrange[1])


def class_grid(images, probs=None, *, ncols: int = 5, title: str | None = None, vrange=None,
               names=None):
    """The network's perception of each class. images: (K, H, W, C); probs: (K,) or None;
    names: (K,) class names (default the indices)."""
    k = len(images)
    names = [str(i) for i in range(k)] if names is None else [str(n) for n in names]
    # The probability on its own line: a class name is often as wide as the tile.
    titles = [names[i] + ("" if probs is None else f"\np={float(probs[i]):.3f}") for i in range(k)]
    return image_grid(images, titles=titles, ncols=ncols, tile_size=1.3, **_range_kw(vrange),
                      suptitle=title or "network's perception of each class")


def unit_grid(images, *, layer: str, units: Sequence[int] | None = None, ncols: int = 8):
    """One tile per channel of `layer`. images: (U, H, W, C)."""
    units = list(range(len(images))) if units is None else list(units)
    return image_grid(images, titles=[str(u) for u in units], ncols=ncols,
                      suptitle=f"what each {layer} channel looks for (mean activation maximized)")


def progress_strip(snapshots, steps: Sequence[int], *, label: str = "", vrange=None):
    """One unit's image at several steps. snapshots: (S, H, W, C)."""
    return image_grid(snapshots, titles=[f"step {s}" for s in steps], ncols=len(steps),
                      tile_size=1.4, suptitle=f"ascent progress {label}".strip(),
                      **_range_kw(vrange))


def tv_comparison(plain, smooth, *, tv_plain, tv_smooth, value_plain, value_smooth,
                  labels: Sequence[str], weight: float, vrange=(0.0, 1.0)):
    """Two rows: without and with a total-variation penalty. plain, smooth: (U, H, W, C)."""
    u = len(plain)
    fig = new_figure(1.3 * u, 3.2)
    axes = fig.subplots(2, u, squeeze=False)
    for row, (imgs, tvs, vals, name) in enumerate(
            ((plain, tv_plain, value_plain, "no TV"),
             (smooth, tv_smooth, value_smooth, f"TV weight {weight:g}"))):
        for i in range(u):
            ax = axes[row, i]
            ax.imshow(np.asarray(imgs[i])[..., 0] if imgs.shape[-1] == 1 else imgs[i], cmap=GRAY,
                      vmin=vrange[0], vmax=vrange[1])
            ax.set_axis_off()
            ax.set_title(f"{labels[i]}: obj {float(vals[i]):.1f}\nTV {float(tvs[i]):.1f}",
                         fontsize=6, pad=2)
        axes[row, 0].text(-0.15, 0.5, name, transform=axes[row, 0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=7)
    fig.suptitle("total variation penalty: smoother images at a comparable objective")
    return fig


def trace_plot(trace, labels: Sequence[str]):
    """Objective per step for each unit. trace: (U, steps)."""
    fig = new_figure(4.5, 3.0)
    ax = fig.subplots()
    for row, lab in zip(np.asarray(trace), labels):
        ax.plot(row, lw=1, label=lab)
    ax.set_xlabel("step")
    ax.set_ylabel("objective")
    ax.legend(fontsize=6, ncol=2)
    return fig
