"""The method x metric table: every listed method's maps computed once, scored by every
listed metric, each cell the mean over images with a bootstrap interval.

    from jaxviz import evaluate as ev
    table = ev.evaluate(probe, probe.params, x, y, methods=["saliency", "grad_cam"],
                        metrics=["deletion", "insertion", "sparseness"], key=key)
    print(table.to_markdown())
    table["saliency", "deletion"].mean, table["saliency", "deletion"].scores   # (N,)

Keys are derived from names (crc32), so a cell's numbers do not change when other methods
or metrics are added to the table. Maps are the methods' display maps (one value per pixel,
`attribution.display_map`), the form every metric and the re-run inside robustness and
randomisation metrics use.
"""
from __future__ import annotations

import dataclasses
import sys
import zlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxviz import attribution as attr_lib
from jaxviz.core import analysis, checks
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate import registry


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (method, metric) cell: mean over images, [low, high] bootstrap interval, the
    per-image scores (N,) and the metric's curve (N, S) or None."""
    mean: float
    low: float
    high: float
    scores: np.ndarray
    curve: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Table:
    """methods x metrics cells; arrows: {metric: "↑" or "↓"} (which way is better)."""
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]
    n_images: int
    confidence: float

    def __getitem__(self, pair: tuple[str, str]) -> Cell:
        return self.cells[pair]

    @property
    def arrows(self) -> dict[str, str]:
        return {m: registry.get(m).arrow for m in self.metrics}

    def best(self, metric: str) -> str:
        """The method with the best mean on `metric` (its direction decides)."""
        means = {m: self.cells[m, metric].mean for m in self.methods}
        pick = max if registry.get(metric).direction == "higher" else min
        return pick(means, key=means.get)

    def to_markdown(self, digits: int = 3) -> str:
        """A GitHub table: methods as rows, "metric ↑/↓" as columns, "mean [low, high]"."""
        head = ["method"] + [f"{m} {self.arrows[m]}" for m in self.metrics]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for meth in self.methods:
            row = [meth] + [_fmt(self.cells[meth, m], digits) for m in self.metrics]
            lines.append("| " + " | ".join(row) + " |")
        pct = round(100 * self.confidence)
        lines.append(f"\n{self.n_images} images; mean [{pct}% bootstrap interval]; "
                     f"↑ higher is better, ↓ lower is better.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain numbers (JSON-ready): {method: {metric: {mean, low, high}}} plus the arrows."""
        out = {m: {k: {"mean": c.mean, "low": c.low, "high": c.high}
                   for (mm, k), c in self.cells.items() if mm == m} for m in self.methods}
        return {"cells": out, "arrows": self.arrows, "n_images": self.n_images,
                "confidence": self.confidence}


def _fmt(c: Cell, digits: int) -> str:
    return f"{c.mean:.{digits}g} [{c.low:.{digits}g}, {c.high:.{digits}g}]"


def name_key(key, name: str):
    """A key of its own for `name`, independent of what else is in the table. key: one PRNG
    key, or one per image (N,) (each folded with the name)."""
    salt = zlib.crc32(name.encode()) & 0x7FFFFFFF
    key = key if isinstance(key, jax.Array) else jnp.asarray(key)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.ndim == (0 if typed else 1):
        return jax.random.fold_in(key, salt)
    return jax.vmap(lambda k: jax.random.fold_in(k, salt))(key)


def bootstrap(scores: np.ndarray, key, n_boot: int = 1000, confidence: float = 0.95):
    """(mean, low, high): the mean of scores (N,) and a percentile bootstrap interval."""
    scores = np.asarray(scores, np.float64)
    idx = np.asarray(jax.random.randint(key, (n_boot, scores.shape[0]), 0, scores.shape[0]))
    means = scores[idx].mean(1)
    tail = 100 * (1 - confidence) / 2
    return float(scores.mean()), float(np.percentile(means, tail)), float(
        np.percentile(means, 100 - tail))


def _check_options(options, names: Sequence[str], what: str) -> dict:
    options = dict(options or {})
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"{what}_options given for {what}s not in the table: {unknown}; "
                         f"{what}s: {list(names)}")
    return options


class Plan(NamedTuple):
    """What a table computes, checked: method names, metric records, options by name."""
    methods: tuple[str, ...]
    specs: tuple[registry.Metric, ...]
    method_options: dict
    metric_options: dict


def plan(fn, methods, metrics, method_options=None, metric_options=None, *,
         masks: bool = False) -> Plan:
    """Every name and option checked before any work. masks: whether masks were given."""
    methods, metrics = list(methods), list(metrics)
    if not methods or not metrics:
        raise ValueError(f"methods and metrics must be non-empty lists of names; got "
                         f"methods={methods!r}, metrics={metrics!r}")
    for m in methods:
        attr_lib.get(m)
    specs = [registry.get(m) for m in metrics]
    if any(s.needs_masks for s in specs) and not masks:
        raise ValueError(f"metrics {[s.name for s in specs if s.needs_masks]} need masks=: "
                         f"(N, H, W) bool ground-truth masks")
    needs_probe = [m for m in methods if attr_lib.get(m).needs_probe]
    if needs_probe and not isinstance(fn, probe_lib.Probe):
        raise ValueError(f"methods {needs_probe} need a Probe: jaxviz.core.probe.from_model")
    return Plan(tuple(methods), tuple(specs), _check_options(method_options, methods, "method"),
                _check_options(metric_options, metrics, "metric"))


def batch_results(fn, params, x, t, key, p: Plan, *, masks=None, chunk_size=None,
                  on_cell=None) -> dict[tuple[str, str], registry.MetricResult]:
    """Every cell's MetricResult on one checked batch x (N, H, W, C), t (N,): each method's
    maps once, then every metric on them. key: one key or one per image (N,); on_cell(method,
    metric) is called after each cell (a progress bar)."""
    out = {}
    for name in p.methods:
        method = attr_lib.get(name)
        opts = p.method_options.get(name, {})
        res = method(fn, params, x, t, key=name_key(key, name) if method.needs_key else None,
                     **opts)
        maps = attr_lib.display_map(method, res)
        for spec in p.specs:
            ckey = name_key(name_key(key, name), spec.name)
            out[name, spec.name] = _score(spec, fn, params, x, t, maps, ckey, name, opts,
                                          p.metric_options.get(spec.name, {}), masks,
                                          chunk_size)
            if on_cell is not None:
                on_cell(name, spec.name)
    return out


def check_confidence(n_boot, confidence) -> None:
    checks.positive_int(n_boot, "n_boot")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")


def make_table(p: Plan, scores, curves, key, n_boot: int, confidence: float) -> Table:
    """The Table from per-cell scores {(method, metric): (N,)} (and curves or None); each
    cell's bootstrap draws from the run key and the cell's names."""
    cells = {}
    for (meth, metric), s in scores.items():
        s = np.asarray(s)
        bkey = jax.random.fold_in(name_key(name_key(key, meth), metric), 1)
        mean, low, high = bootstrap(s, bkey, n_boot, confidence)
        cells[meth, metric] = Cell(mean, low, high, s, (curves or {}).get((meth, metric)))
    n = len(next(iter(scores.values())))
    return Table(p.methods, tuple(s.name for s in p.specs), cells, int(n), float(confidence))


def evaluate(fn, params, images, target, *, methods: Sequence[str], metrics: Sequence[str],
             key, method_options=None, metric_options=None, masks=None, chunk_size=None,
             progress: bool = False, n_boot: int = 1000, confidence: float = 0.95) -> Table:
    """Score every method's maps with every metric -> Table.

    methods / metrics: registered names (`attribution.METHODS`, `evaluate.METRICS`).
    method_options / metric_options: {name: {option: value}} over the registry defaults.
    masks: (N, H, W) bool, for localisation metrics. chunk_size: forward passes at once,
    for every metric that has no chunk_size of its own in metric_options, except those that
    re-run the method (a row there is one whole attribution: give theirs in
    metric_options, default one image's samples). progress: a bar over cells (only when
    stderr is a terminal). A data set in batches: `evaluate.dataset.evaluate_batches`."""
    p = plan(fn, methods, metrics, method_options, metric_options, masks=masks is not None)
    x, t = analysis.check_inputs(fn, params, images, target)
    check_confidence(n_boot, confidence)
    with progress_bar(len(p.methods) * len(p.specs), progress) as bar:
        res = batch_results(fn, params, x, t, key, p, masks=masks, chunk_size=chunk_size,
                            on_cell=lambda m, k: (bar.set_postfix_str(f"{m} / {k}"),
                                                  bar.update()))
    return make_table(p, {c: r.scores for c, r in res.items()},
                      {c: None if r.curve is None else np.asarray(r.curve)
                       for c, r in res.items()}, key, n_boot, confidence)


def progress_bar(total: int, progress: bool):
    """A tqdm bar on stderr, shown only when asked and stderr is a terminal."""
    return tqdm(total=total, desc="evaluate", file=sys.stderr,
                disable=not (progress and sys.stderr.isatty()))


def _score(spec, fn, params, x, t, maps, key, method, method_options, options, masks,
           chunk_size) -> registry.MetricResult:
    opts = {**spec.defaults, **options}
    if not spec.needs_method:  # there a row is a whole attribution (IG: n_steps passes)
        opts.setdefault("chunk_size", chunk_size)
    if spec.needs_method:
        opts.update(method=method, method_options=method_options)
    if spec.needs_masks:
        opts["masks"] = masks
    return spec.fn(fn, params, x, t, maps, key=key, **opts)
