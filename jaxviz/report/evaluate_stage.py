"""The evaluation stage, "Which map to believe": a few methods scored by a few metrics on the
report's images (deletion and insertion curves per method, the method x metric table, a
two-line reading). Lean on purpose: the full table is `jaxviz.evaluate.evaluate` over every
method and metric, run by an experiment or the benchmark.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar
from pathlib import Path

import jax

from jaxviz import evaluate as ev
from jaxviz.plot import evaluate as plot_evaluate
from jaxviz.report.base import Inputs, Section, save

# The report's key for this stage: jax.random.fold_in(inputs.key, KEY_SALT).
KEY_SALT = 3
METHODS = ("saliency", "guided_backprop", "integrated_gradients", "grad_cam")
METRICS = ("deletion", "insertion", "faithfulness_correlation", "max_sensitivity",
           "sparseness")
CURVES = ("deletion", "insertion")
# Fewer draws than the registry's defaults: the report shows a handful of images.
METRIC_OPTIONS = {"faithfulness_correlation": {"n_runs": 32},
                  "max_sensitivity": {"n_samples": 4}}


def _per_row(images) -> dict:
    """Deletion and insertion remove one image row's worth of pixels a step: W always
    divides H * W (the metrics' default, 28, fits 28 x 28 images only)."""
    return {m: {"pixels_per_step": int(images.shape[2])} for m in CURVES}


@dataclasses.dataclass(frozen=True)
class EvaluateStage:
    """evaluate_curves.png and evaluate_table.png. methods / metric_names: registered names;
    n_steps: IG's path points (the attribution stage's, so its compiled IG is reused)."""
    methods: tuple[str, ...] = METHODS
    metric_names: tuple[str, ...] = METRICS
    n_steps: int = 64
    formats: tuple[str, ...] = ("png",)
    name: str = "evaluate"
    # --small: two methods, the two curves and one map-only metric.
    SMALL: ClassVar[dict] = {"methods": ("saliency", "grad_cam"),
                             "metric_names": ("deletion", "insertion", "sparseness")}

    def run(self, inputs: Inputs, earlier: Mapping) -> ev.Table:
        opts = {"integrated_gradients": {"n_steps": self.n_steps}}
        # A blank map is scored as it is; its warning reaches the page (run_stage).
        return ev.evaluate(inputs.probe, inputs.params, inputs.images, inputs.labels,
                           methods=list(self.methods), metrics=list(self.metric_names),
                           key=jax.random.fold_in(inputs.key, KEY_SALT),
                           method_options={k: v for k, v in opts.items() if k in self.methods},
                           metric_options={k: v for k, v in
                                           {**METRIC_OPTIONS, **_per_row(inputs.images)}.items()
                                           if k in self.metric_names})

    def render(self, table: ev.Table, out_dir: Path) -> list[Path]:
        paths = []
        curves = {m: {meth: table[meth, m].curve for meth in table.methods}
                  for m in CURVES if m in table.metrics}
        if curves:
            fig = plot_evaluate.curves_figure(
                curves, titles={m: f"{m} {table.arrows[m]}" for m in curves})
            paths += save(fig, out_dir, "evaluate_curves.png", self.formats)[:1]
        text = [[_cell(table[meth, m]) for m in table.metrics] for meth in table.methods]
        best = [table.methods.index(table.best(m)) for m in table.metrics]
        fig = plot_evaluate.table_figure(
            table.methods, [f"{m.replace('_', ' ')} {table.arrows[m]}" for m in table.metrics],
            text, best, title=f"mean [95% bootstrap interval] over {table.n_images} images")
        return paths + save(fig, out_dir, "evaluate_table.png", self.formats)[:1]

    def metrics(self, table: ev.Table) -> dict:
        return {"evaluate": table.to_dict()}

    def section(self, table: ev.Table, figures) -> Section:
        return Section("Which map to believe", reading(table), figures,
                       {"images": table.n_images, "methods": ", ".join(table.methods),
                        "IG": f"{self.n_steps} steps",
                        **{m: _options(m) for m in table.metrics}})


def _cell(c: ev.Cell) -> str:
    return f"{c.mean:.3g}\n[{c.low:.3g}, {c.high:.3g}]"


def _options(metric: str) -> str:
    opts = {**ev.get(metric).defaults, **METRIC_OPTIONS.get(metric, {})}
    return ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"


def reading(table: ev.Table) -> str:
    """Two lines: the best method per metric, and where its interval is clear of the next."""
    best = {m: table.best(m) for m in table.metrics}
    first = "Best per metric: " + "; ".join(
        f"{m.replace('_', ' ')} {table.arrows[m]} {b}" for m, b in best.items()) + "."
    clear = [m for m, b in best.items() if _separated(table, m, b)]
    second = (f"Only {', '.join(c.replace('_', ' ') for c in clear)} separate"
              f"{'s' if len(clear) == 1 else ''} the best from the runner-up (disjoint "
              f"intervals); the other rankings are within noise at {table.n_images} images."
              if clear else f"No ranking is clear of noise at {table.n_images} images "
              f"(the best's interval overlaps the runner-up's everywhere).")
    return first + "\n" + second


def _separated(table: ev.Table, metric: str, best: str) -> bool:
    others = [table[m, metric] for m in table.methods if m != best]
    if not others:
        return False
    b = table[best, metric]
    if ev.get(metric).direction == "higher":
        return all(b.low > o.high for o in others)
    return all(b.high < o.low for o in others)
