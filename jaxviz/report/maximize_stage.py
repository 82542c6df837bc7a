"""Activation maximization stages: every class logit and the channels of the deepest conv
layers (the report), or chosen units of one layer (`jaxviz maximize --layer ... --units ...`)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxviz import arch, filters, maximize as mx
from jaxviz.plot import maximize as plot_mx
from jaxviz.report.base import Inputs, Section, save

# The report's key for this stage: jax.random.fold_in(inputs.key, KEY_SALT).
KEY_SALT = 1


def total_variation(images) -> np.ndarray:
    """Anisotropic total variation per image. images: (U, H, W, C) -> (U,)."""
    x = np.asarray(images, np.float64)
    return (np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3))
            + np.abs(np.diff(x, axis=2)).sum(axis=(1, 2, 3)))


def deepest_layers(probe, params, image_shape, shapes: Mapping, n: int = 2) -> list[str]:
    """The last n conv layers (a 2-D kernel) with an (N, h, w, c) output, in call order;
    without conv kernels, the last n layers with a 4-D output. shapes: {layer: shape}."""
    spatial = [name for name, s in shapes.items() if len(s) == 4]
    try:
        p, prm = arch.as_probe(probe, params, "probe")
        convs = [c for c in filters.conv_layers(p, prm, (1, *image_shape)) if c in spatial]
    except (TypeError, ValueError):  # a plain function: no parameter tree to read
        convs = []
    return (convs or spatial)[-n:]


@dataclasses.dataclass(frozen=True)
class MaximizeResult:
    """classes: the class ascent with the TV prior (snapshots at `checkpoints`);
    class_probs: (K, K) softmax of each class's best image; plain: the same ascent without
    a prior; units: {layer: (unit indices, Maximized)}; seconds: wall time per part;
    names: (K,) the class names."""
    classes: mx.Maximized
    class_probs: np.ndarray
    plain: mx.Maximized
    checkpoints: tuple[int, ...]
    units: dict
    seconds: dict
    names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MaximizeStage:
    """Class grid, conv-channel grids, progress strip, TV comparison and trace.

    The image shape is the examples' (H, W, C). optimizer: an optax optimizer (default Adam
    0.05; pass one object across calls to reuse the compiled ascent). unit_objective:
    "channel" (mean activation, as keras-vis) or "neuron" (the centre position). layers:
    conv layers to show (default `deepest_layers`: the last two conv layers with a spatial
    output, where units respond to parts rather than to a colour), max_channels each.
    """
    steps: int = 256
    input_range: tuple = (0.0, 1.0)
    tv_weight: float = 10.0
    jitter: int = 0
    layers: Sequence[str] | None = None
    max_channels: int = 32
    strip_class: int = 0
    optimizer: Any = None
    unit_objective: str = "channel"
    formats: Sequence[str] = ("png",)
    name: str = "maximize"

    def _common(self, inputs: Inputs) -> dict:
        return dict(key=jax.random.fold_in(inputs.key, KEY_SALT), steps=self.steps,
                    shape=tuple(np.shape(inputs.images)[1:]), input_range=self.input_range,
                    transforms=(mx.jitter(self.jitter),) if self.jitter else (),
                    optimizer=mx.ADAM if self.optimizer is None else self.optimizer)

    def run(self, inputs: Inputs, earlier: Mapping) -> MaximizeResult:
        if self.unit_objective not in ("channel", "neuron"):
            raise ValueError(f"unit_objective must be 'channel' or 'neuron'; "
                             f"got {self.unit_objective!r}")
        probe, params, common = inputs.probe, inputs.params, self._common(inputs)
        regs = (mx.total_variation(self.tv_weight),)
        cps = tuple(sorted({c for c in (0, 16, 64, self.steps) if c <= self.steps}))
        t = time.perf_counter()
        cls = mx.all_units(probe, params, regularizers=regs, checkpoints=cps, **common)
        probs = np.asarray(jax.nn.softmax(probe(params, cls.best), axis=-1))
        seconds = {"classes": time.perf_counter() - t}
        plain = mx.all_units(probe, params, **common)
        shapes = mx.model_shapes(probe, params, common["shape"])[1]
        layers = list(self.layers) if self.layers is not None else deepest_layers(
            probe, params, common["shape"], shapes)
        units = {}
        for layer in layers:
            idx = list(range(min(shapes[layer][-1], self.max_channels)))
            t = time.perf_counter()
            if self.unit_objective == "neuron":
                r = mx.maximize(probe, params, [mx.neuron(layer, c) for c in idx],
                                regularizers=regs, **common)
            else:
                r = mx.all_units(probe, params, layer, units=idx, regularizers=regs, **common)
            seconds[layer] = time.perf_counter() - t
            units[layer] = (idx, r)
        return MaximizeResult(cls, probs, plain, cps, units, seconds,
                              tuple(inputs.subject.names(np.arange(probs.shape[0]))))

    def render(self, result: MaximizeResult, out_dir: Path) -> list[Path]:
        cls, probs, k = result.classes, result.class_probs, result.class_probs.shape[0]
        vrange, fmt = self.input_range, self.formats
        names = list(result.names) or [str(i) for i in range(k)]
        paths = save(plot_mx.class_grid(cls.best, probs[np.arange(k), np.arange(k)],
                                        vrange=vrange, names=names),
                     out_dir, "maximize_classes.png", fmt)
        paths += save(plot_mx.progress_strip(cls.snapshots[:, self.strip_class],
                                             result.checkpoints, vrange=vrange,
                                             label=f"(class {names[self.strip_class]})"),
                      out_dir, "maximize_progress.png", fmt)
        show = np.arange(min(k, 5))
        tv_p, tv_s = total_variation(result.plain.best), total_variation(cls.best)
        paths += save(plot_mx.tv_comparison(
            np.asarray(result.plain.best)[show], np.asarray(cls.best)[show],
            tv_plain=tv_p[show], tv_smooth=tv_s[show],
            value_plain=np.asarray(result.plain.trace).max(1)[show],
            value_smooth=np.asarray(cls.trace).max(1)[show], labels=[names[i] for i in show],
            weight=self.tv_weight, vrange=vrange), out_dir, "maximize_tv.png", fmt)
        paths += save(plot_mx.trace_plot(cls.trace, names), out_dir,
                      "maximize_trace.png", fmt)
        for layer, (idx, r) in result.units.items():
            paths += save(plot_mx.unit_grid(r.best, layer=layer, units=idx), out_dir,
                          f"maximize_{layer}.png", fmt)
        return paths

    def metrics(self, result: MaximizeResult) -> dict:
        probs = result.class_probs
        preds = probs.argmax(1)
        return {"maximize": {
            "classified_as_target": int(sum(p == k for k, p in enumerate(preds))),
            "units": len(preds), "class_prob": [float(probs[i, i]) for i in range(len(preds))],
            "tv_plain": float(total_variation(result.plain.best).mean()),
            "tv_smooth": float(total_variation(result.classes.best).mean())}}

    def section(self, result, figures) -> Section:
        return Section(
            "Activation maximization", "Inputs that maximize each class logit, then the "
            f"channels of {', '.join(result.units) or 'no conv layer'} (gradient ascent, all "
            "units in one vmapped program; titles give the softmax probability of the class). "
            "The TV figure shows what the total-variation prior buys.", figures,
            {"steps": self.steps, "optimizer": "Adam 0.05" if self.optimizer is None
             else "custom", "regularizer": f"total variation, weight {self.tv_weight:g}",
             "parametrization": "pixels through a sigmoid into [0, 1]"})


@dataclasses.dataclass(frozen=True)
class UnitsStage:
    """One grid for chosen units of one layer ("logits" = the model output), with the TV
    prior; units None: all of them. Writes maximize_<layer>_units.png."""
    layer: str = "logits"
    units: Sequence[int] | None = None
    steps: int = 256
    tv_weight: float = 10.0
    optimizer: Any = None
    name: str = "maximize_units"

    def run(self, inputs: Inputs, earlier: Mapping) -> tuple[list[int], mx.Maximized, list]:
        r = mx.all_units(inputs.probe, inputs.params, self.layer, units=self.units,
                         key=jax.random.fold_in(inputs.key, KEY_SALT), steps=self.steps,
                         shape=tuple(np.shape(inputs.images)[1:]),
                         regularizers=(mx.total_variation(self.tv_weight),),
                         optimizer=mx.ADAM if self.optimizer is None else self.optimizer)
        shown = list(range(r.best.shape[0])) if self.units is None else list(self.units)
        # The model's output units are its classes: titled by their names where known.
        names = inputs.subject.names(shown) if self.layer == "logits" else []
        return shown, r, [f"{u} {n}" if n != str(u) else n for u, n in zip(shown, names)]

    def render(self, result, out_dir: Path) -> list[Path]:
        shown, r, names = result
        fig = plot_mx.unit_grid(r.best, layer=self.layer, units=names or shown,
                                ncols=min(8, max(5, len(shown) // 2)))
        return save(fig, out_dir, f"maximize_{self.layer}_units.png")

    def metrics(self, result) -> dict:
        return {"values": [float(v) for v in np.asarray(result[1].trace).max(1)]}

    def section(self, result, figures) -> Section:
        return Section(f"Units of {self.layer}", "Inputs that maximize each unit.", figures,
                       {"steps": self.steps})
