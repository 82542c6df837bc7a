"""Attribution figures: the method comparison grid and the randomization sanity check.

Arrays in, matplotlib Figures out; the attribution stage (jaxviz.report) computes the maps
and says which methods are signed (the registry's `Method.signed`): the colormap is chosen
per method, never from one tile's values.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxviz.plot.core import DIVERGING, GRAY, finish_grid, heatmap_overlay, new_figure

SEQ_MAP = "hot"


def _gray(image):
    image = np.asarray(image, np.float32)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def tile_range(m: np.ndarray, signed: bool) -> tuple[float, float, str]:
    """A map's colour range and its caption: signed -> symmetric about 0 ("±0.12");
    unsigned -> min..max ("0..0.3"), so an offset (RISE's mean mask weight) does not fill
    the scale; a constant map -> a unit range around it ("blank (all 0)")."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    if lo == hi:
        return lo - 0.5, lo + 0.5, f"blank (all {_num(lo)})"
    if signed:
        top = max(abs(lo), abs(hi))
        return -top, top, f"±{_num(top)}"
    return lo, hi, f"{_num(lo)}..{_num(hi)}"


def _num(v: float) -> str:
    """Two significant digits, without exponents for values of 10 and more."""
    return f"{v:.2g}" if abs(v) < 10 else f"{v:.0f}"


def _bands(names: list[str], max_columns: int | None) -> list[list[str]]:
    step = len(names) if not max_columns else max(1, int(max_columns))
    return [names[i:i + step] for i in range(0, len(names), step)] or [[]]


def comparison_figure(images, columns: Mapping[str, np.ndarray], *, signed=None, labels=None,
                      overlay: tuple[str, ...] = ("Grad-CAM",), title: str | None = None,
                      max_columns: int | None = None):
    """Rows = images, columns = the image then one map per method.

    images: (K, H, W, C); columns: {name: (K, H, W) map}; signed: {name: bool}, the
    method's (not the tile's) sign: signed maps use a diverging colormap symmetric about 0,
    unsigned ones a sequential one from their min to max (None: every column signed).
    Each tile is scaled on its own and its range is written under it. Names in `overlay`
    are drawn over the image. labels: one text per row (class names). max_columns: methods
    per band; more wrap into further bands of rows, each with the image column again.
    """
    images = np.asarray(images)
    k = images.shape[0]
    for name, m in columns.items():
        if np.shape(m)[:1] != (k,) or np.ndim(m) != 3:
            raise ValueError(f"columns[{name!r}] must be ({k}, H, W); got shape {np.shape(m)}")
    if labels is not None and len(labels) != k:
        raise ValueError(f"labels must hold one text per image ({k}); got {len(labels)}")
    signed = {} if signed is None else dict(signed)
    unknown = sorted(set(signed) - set(columns))
    if unknown:
        raise ValueError(f"signed names columns that are not drawn: {unknown}")
    bands = _bands(list(columns), max_columns)
    ncol = 1 + max(len(b) for b in bands)
    fig = new_figure(1.05 * ncol, (1.25 * k + 0.35) * len(bands) + 0.2 * bool(title))
    axes = fig.subplots(k * len(bands), ncol, squeeze=False)
    for b, band in enumerate(bands):
        block = axes[b * k:(b + 1) * k]
        _draw_band(block, images, band, columns, signed, labels, overlay)
        for j, name in enumerate(["image", *band]):
            block[0, j].set_title(name, fontsize=7, pad=3)
        for ax in block[:, 1 + len(band):].flat:
            ax.set_visible(False)
    return finish_grid(fig, axes, [], title)


def _draw_band(axes, images, names, columns, signed, labels, overlay) -> None:
    """One band: axes (K, 1 + len(names) or more); the image column, then a map per name."""
    for i in range(images.shape[0]):
        img = _gray(images[i])
        axes[i, 0].imshow(img, cmap=GRAY if img.ndim == 2 else None)
        if labels is not None:
            text = str(labels[i])
            axes[i, 0].set_ylabel(text, rotation=0 if len(text) <= 3 else 90, labelpad=8,
                                  fontsize=7)
        for j, name in enumerate(names, start=1):
            m = np.asarray(columns[name][i], np.float32)
            is_signed = bool(signed.get(name, True))
            lo, hi, text = tile_range(m, is_signed)
            if name in overlay:
                heatmap_overlay(axes[i, j], img, m, cmap="jet", vmin=lo, vmax=hi)
                axes[i, j].set_axis_on()  # the overlay turns it off; the range label needs it
            else:
                axes[i, j].imshow(m, cmap=DIVERGING if is_signed else SEQ_MAP, vmin=lo, vmax=hi)
            axes[i, j].set_xlabel(text, fontsize=6, labelpad=1)


def randomization_figure(result: Mapping, *, title: str | None = None):
    """Line plot of `cascading_randomization`'s result: rank correlation vs. layers
    re-initialised (cumulative, from the top)."""
    layers = list(result["layers"])
    fig = new_figure(0.55 * len(layers) + 2.2, 2.4)
    ax = fig.subplots()
    xs = np.arange(len(layers) + 1)
    for name, values in result.items():
        if name != "layers":
            ys = np.asarray([1.0, *np.asarray(values, np.float64)])
            line, = ax.plot(xs, ys, marker="o", label=name)
            for x in xs[np.isnan(ys)]:  # a gap, marked on the bottom edge, never a value
                ax.plot(x, -0.95, marker="x", ls="none", color=line.get_color())
                ax.annotate("NaN", (x, -0.95), textcoords="offset points", xytext=(0, 5),
                            ha="center", fontsize=7, color=line.get_color())
    ax.set_xticks(xs, ["none", *layers], rotation=30, ha="right")
    ax.set_xlabel("re-initialised down to layer")
    ax.set_ylabel("rank correlation with trained maps")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(frameon=False)
    ax.set_title(title or "model randomization (Adebayo et al. 2018)")
    return fig
