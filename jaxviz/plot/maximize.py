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


def _show(ax, tile, vrange):
    tile = np.asarray(tile, np.float32)
    lo, hi = vrange if vrange is not None else (float(tile.min()), float(tile.max()) + 1e-12)
    if tile.shape[-1] == 1:
        ax.imshow(tile[..., 0], cmap=GRAY, vmin=lo, vmax=hi)
    else:
        ax.imshow(np.clip((tile - lo) / (hi - lo), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def channel_atlas(visualizations, patches, *, layer: str, channels: Sequence[int] | None = None,
                  groups: int = 2, vrange=(0.0, 1.0), title: str | None = None):
    """What each channel of `layer` looks for, as OpenAI Microscope shows it: per channel its
    feature visualization, then its top-activating dataset patches, best first.

    visualizations: (U, H, W, C); patches: (U, k, ph, pw, C) (maximize.patches.top_patches);
    groups: channels side by side per row; vrange: the images' value range (None: each tile
    its own).
    """
    vis, pat = np.asarray(visualizations), np.asarray(patches)
    u, k = len(vis), pat.shape[1]
    if pat.shape[0] != u:
        raise ValueError(f"visualizations ({u}) and patches ({pat.shape[0]}) must have one entry "
                         f"per channel each")
    channels = list(range(u)) if channels is None else list(channels)
    rows = int(np.ceil(u / groups))
    cols = groups * (k + 1) + (groups - 1)  # a blank spacer column between groups
    fig = new_figure(0.85 * cols, 0.95 * rows + 0.5)
    grid = fig.add_gridspec(rows, cols, wspace=0.08, hspace=0.35,
                            width_ratios=([1] * (k + 1) + [0.35]) * (groups - 1) + [1] * (k + 1))
    for i in range(u):
        r, g = divmod(i, groups)
        c0 = g * (k + 2)
        ax = fig.add_subplot(grid[r, c0])
        _show(ax, vis[i], vrange)
        ax.set_title(f"{layer}:{channels[i]}", fontsize=6, pad=1.5)
        for j in range(k):
            ax = fig.add_subplot(grid[r, c0 + 1 + j])
            _show(ax, pat[i, j], vrange)
            if r == 0 and j == 0:
                ax.set_title("top patches", fontsize=6, pad=1.5, loc="left")
    fig.suptitle(title or f"what each {layer} channel looks for: feature visualization | "
                 f"top-{k} dataset patches", fontsize=8)
    return fig


def parametrization_rows(rows: dict, probs: dict | None = None, *, names=None,
                         vrange=(0.0, 1.0), title: str | None = None):
    """Each class maximized several ways, one row per way. rows: {label: (K, H, W, C)};
    probs: {label: (K,)} the probability each image reaches (shown under it)."""
    labels = list(rows)
    k = len(rows[labels[0]])
    names = [str(i) for i in range(k)] if names is None else [str(n) for n in names]
    fig = new_figure(1.05 * k + 0.6, 1.25 * len(labels) + 0.4)
    axes = fig.subplots(len(labels), k, squeeze=False)
    for r, lab in enumerate(labels):
        for i in range(k):
            ax = axes[r, i]
            _show(ax, rows[lab][i], vrange)
            p = "" if probs is None else f" p={float(probs[lab][i]):.2f}"
            ax.set_title(f"{names[i]}{p}", fontsize=6, pad=1.5)
        axes[r, 0].set_ylabel(lab, fontsize=7)
    fig.suptitle(title or "class maximization by parametrization", fontsize=8)
    return fig


def lucid_extras(diverse, targets, inverted, caricatures, *, layer: str, channel: int,
                 vrange=(0.0, 1.0)):
    """Three panels in rows: a channel's batch without and with diversity (diverse: (2, n,
    H, W, C)); target images beside their feature inversions and caricatures at `layer`
    (targets, inverted, caricatures: (T, H, W, C))."""
    n, t = diverse.shape[1], len(targets)
    cols = max(n, 3 * t)
    fig = new_figure(1.0 * cols, 3.6)
    grid = fig.add_gridspec(3, cols, hspace=0.45, wspace=0.1)
    for r, label in enumerate(("no diversity", "diversity")):
        for j in range(n):
            ax = fig.add_subplot(grid[r, j])
            _show(ax, diverse[r, j], vrange)
            if j == 0:
                ax.set_ylabel(label, fontsize=6)
        if r == 0:
            fig.axes[-n].set_title(f"{layer}:{channel}, a batch of {n}", fontsize=6, loc="left")
    for i in range(t):
        for j, (img, lab) in enumerate(((targets[i], "image"), (inverted[i], "inversion"),
                                        (caricatures[i], "caricature"))):
            ax = fig.add_subplot(grid[2, 3 * i + j])
            _show(ax, img, vrange)
            ax.set_title(lab, fontsize=6, pad=1.5)
    fig.suptitle(f"diversity, feature inversion and caricature at {layer}", fontsize=8)
    return fig
