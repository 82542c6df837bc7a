"""Figures for activation maximization, and `write_maximize_figures` that makes them all.

The figure functions take arrays and return a Figure; `write_maximize_figures` runs the
ascents (jaxviz.maximize) and saves the figures (used by the main experiment and the CLI).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxviz.plot.core import GRAY, image_grid, new_figure, save_figure


def _range_kw(vrange):
    """vrange (lo, hi): one shared scale (the input range); None: each tile its own."""
    return {} if vrange is None else dict(per_tile_norm=False, vmin=vrange[0], vmax=vrange[1])


def class_grid(images, probs=None, *, ncols: int = 5, title: str | None = None, vrange=None):
    """The network's perception of each class. images: (K, H, W, C); probs: (K,) or None."""
    k = len(images)
    titles = [f"{i}" + ("" if probs is None else f"  p={float(probs[i]):.3f}") for i in range(k)]
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


def total_variation(images) -> np.ndarray:
    """Anisotropic total variation per image. images: (U, H, W, C) -> (U,)."""
    x = np.asarray(images, np.float64)
    return (np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3))
            + np.abs(np.diff(x, axis=2)).sum(axis=(1, 2, 3)))


def write_maximize_figures(probe, params, out_dir, key=None, *, steps: int = 256,
                           shape=(28, 28, 1), input_range=(0.0, 1.0), tv_weight: float = 10.0, jitter: int = 0,
                           layers: Sequence[str] | None = None, max_channels: int = 32,
                           strip_class: int = 0, optimizer=None, unit_objective: str = "channel",
                           formats: Sequence[str] = ("png",)) -> dict:
    """Class grid, conv-channel grids, progress strip, TV comparison; returns paths and numbers.

    optimizer: an optax optimizer (default Adam 0.05). unit_objective: "channel" (mean
    activation, as keras-vis) or "neuron" (the centre position). layers: conv layers to show (default: the first two 4-D activations of the model);
    at most max_channels channels each. The returned dict holds figure paths, and
    "class_prob" / "class_pred" (K,) — the softmax probability of its own class and the
    predicted class of each class's maximizing image — plus timings.
    """
    from jaxviz import maximize as mx

    if unit_objective not in ("channel", "neuron"):
        raise ValueError(f"unit_objective must be 'channel' or 'neuron'; got {unit_objective!r}")

    out = Path(out_dir)
    key = jax.random.key(0) if key is None else key
    regs = (mx.total_variation(tv_weight),)
    common = dict(key=key, steps=steps, shape=shape, input_range=input_range, transforms=(mx.jitter(jitter),) if jitter
                  else (), optimizer=mx.ADAM if optimizer is None else optimizer)
    cps = tuple(sorted({c for c in (0, 16, 64, steps) if c <= steps}))
    result: dict = {}

    t = time.perf_counter()
    cls = mx.all_units(probe, params, regularizers=regs, checkpoints=cps, **common)
    probs = np.asarray(jax.nn.softmax(probe(params, cls.best), axis=-1))
    k = probs.shape[0]
    result["seconds_classes"] = time.perf_counter() - t
    result["class_prob"] = [float(probs[i, i]) for i in range(k)]
    result["class_pred"] = [int(v) for v in probs.argmax(1)]
    result["class_logit"] = [float(v) for v in np.asarray(cls.trace).max(1)]
    result["classes"] = _save(class_grid(cls.best, probs[np.arange(k), np.arange(k)],
                                         vrange=input_range),
                              out / "maximize_classes", formats)
    result["trace"] = _save(trace_plot(cls.trace, [str(i) for i in range(k)]),
                            out / "maximize_trace", formats)
    result["progress"] = _save(progress_strip(cls.snapshots[:, strip_class], cps,
                                              label=f"(class {strip_class})",
                                              vrange=input_range),
                               out / "maximize_progress", formats)

    plain = mx.all_units(probe, params, **common)
    show = np.arange(min(k, 5))
    best_plain, best_smooth = np.asarray(plain.best), np.asarray(cls.best)
    tv_p, tv_s = total_variation(plain.best), total_variation(cls.best)
    result["tv_plain"], result["tv_smooth"] = float(tv_p.mean()), float(tv_s.mean())
    result["tv_comparison"] = _save(tv_comparison(
        best_plain[show], best_smooth[show], tv_plain=tv_p[show], tv_smooth=tv_s[show],
        value_plain=np.asarray(plain.trace).max(1)[show],
        value_smooth=np.asarray(cls.trace).max(1)[show], labels=[str(i) for i in show],
        weight=tv_weight, vrange=input_range), out / "maximize_tv", formats)

    shapes = mx.model_shapes(probe, params, shape)[1]
    layers = list(layers) if layers is not None else [n for n, s in shapes.items()
                                                       if len(s) == 4][:2]
    for layer in layers:
        units = list(range(min(shapes[layer][-1], max_channels)))
        t = time.perf_counter()
        if unit_objective == "neuron":
            r = mx.maximize(probe, params, [mx.neuron(layer, c) for c in units],
                            regularizers=regs, **common)
        else:
            r = mx.all_units(probe, params, layer, units=units, regularizers=regs, **common)
        result[f"seconds_{layer}"] = time.perf_counter() - t
        result[f"units_{layer}"] = _save(unit_grid(r.best, layer=layer, units=units),
                                         out / f"maximize_{layer}", formats)
    return result


def write_units_figure(probe, params, layer: str, units: Sequence[int] | None, out_dir,
                       key=None, *, steps: int = 256, tv_weight: float = 10.0,
                       formats: Sequence[str] = ("png",), **kwargs) -> dict:
    """One grid for chosen units of one layer ("logits" = the model output), for the CLI:
    `jaxviz maximize --layer preds --units 0-9`. kwargs go to `maximize`.
    Returns {"figure": path, "values": best objective per unit, "seconds": ...}."""
    from jaxviz import maximize as mx

    t = time.perf_counter()
    r = mx.all_units(probe, params, layer, units=units, key=jax.random.key(0) if key is None
                     else key, steps=steps, regularizers=(mx.total_variation(tv_weight),),
                     **kwargs)
    values = np.asarray(r.trace).max(1)
    seconds = time.perf_counter() - t
    shown = list(range(len(values))) if units is None else list(units)
    fig = unit_grid(r.best, layer=layer, units=shown, ncols=min(8, max(5, len(shown) // 2)))
    path = _save(fig, Path(out_dir) / f"maximize_{layer}_units", formats)
    return {"figure": path, "values": [float(v) for v in values], "seconds": seconds}


def _save(fig, stem: Path, formats) -> str:
    return str(save_figure(fig, stem.with_suffix("." + formats[0]), formats)[0])
