"""`jaxviz.evaluate`: every registered metric on a batch of digits, and the method x metric
table, with GFLOP/s from counted forward passes and the share of jaxviz's own batched
forward rate each metric reaches.

The seed's MnistCNN with random weights (speed does not depend on the weights), saliency
maps, the registry's default options (the table's), `chunk_size` 256 forward passes at a
time. Forward passes per image are read from each metric's curve: S + 1 for a curve of S
steps (the steps and the unperturbed image), monotonicity-correlation S x n_samples + 1;
metrics that re-run the method count its passes (saliency: a forward and a backward, 3 F).
`ratio`: forward passes per second inside the metric over the batched forward pass's own
rate (1.0 = as fast as plain batched inference). Metrics that need ground-truth masks are
left out (the cluttered-MNIST experiment times those).
"""
from __future__ import annotations

import jax
from flax import nnx

from experiments.bench import harness
from jaxviz import attribution as A
from jaxviz import evaluate as ev
from jaxviz.core import compile as compile_lib
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

F = harness.CNN_FORWARD_FLOPS
CHUNK = 256
SALIENCY_PASSES = 3  # a forward and a backward (2 F)
# Methods of about one backward pass each: the robustness metrics re-run the method
# n_samples times per image, which for IG (n_steps passes) would dominate the table.
TABLE_METHODS = ("saliency", "gradient_x_input", "grad_cam")


def forward_passes(name: str, res: ev.MetricResult, options: dict) -> float | None:
    """Forward-pass equivalents per image of one metric call on saliency maps."""
    spec = ev.get(name)
    if res.curve is None and not spec.needs_method:
        return None  # the map alone (complexity), no model call
    steps = res.curve.shape[1] if res.curve is not None else 1
    if name == "monotonicity_correlation":
        return steps * options.get("n_samples", 10) + 1
    if name == "random_logit":
        return SALIENCY_PASSES
    if spec.needs_method:  # robustness: the method on every sample; randomisation: per layer
        return steps * SALIENCY_PASSES
    if name == "completeness":
        return 2
    return steps + 1


def forward_rate(probe, x) -> float:
    """Forward passes per second of the model on the whole batch at once."""
    run = compile_lib.jit(lambda p, v: probe(p, v), kind="forward")
    t = harness.timed(lambda: run(probe.params, x), 3)
    return x.shape[0] / t.seconds


def rows(quick: bool = False) -> list[dict]:
    n = 32 if quick else 256
    data = load_bundled()
    x, y = data.x_val[:n], data.y_val[:n]
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    maps = A.display_map(A.get("saliency"), A.attribute("saliency", probe, probe.params, x, y))
    rate = forward_rate(probe, x)
    out = [harness.row("evaluate/forward", n / rate, settings=f"{n} digits, one batch",
                       gflops=rate * F / 1e9, images_per_s=rate, forward_equiv=1.0, ratio=1.0)]
    key = jax.random.key(0)
    passes_per_metric = {}
    for name, spec in ev.METRICS.items():
        if spec.needs_masks:
            continue
        opts = {**spec.defaults, "chunk_size": CHUNK,
                **({"method": "saliency"} if spec.needs_method else {})}
        t = harness.timed(lambda s=spec, o=opts: s.fn(probe, probe.params, x, y, maps, key=key,
                                                      **o).scores, 1)
        res = spec.fn(probe, probe.params, x, y, maps, key=key, **opts)
        passes = forward_passes(name, res, opts)
        passes_per_metric[name] = passes or 0
        out.append(harness.row(
            f"evaluate/{name}", t.seconds, compile_s=t.compile_s,
            settings=f"{n} digits, saliency maps, registry defaults",
            gflops=passes * F * n / t.seconds / 1e9 if passes else None,
            images_per_s=n / t.seconds, forward_equiv=passes,
            ratio=passes * n / t.seconds / rate if passes else None))
    out.append(_table_row(probe, x, y, key, n, rate, passes_per_metric))
    return out


def _table_row(probe, x, y, key, n, rate, passes_per_metric) -> dict:
    """The method x metric table (mask-free metrics), timed as one call: the metrics' cores
    are already compiled by the rows above (same shapes and options); the ones that re-run
    a method compile inside this call, so `seconds` includes those compiles. Forward-pass
    equivalents: each metric's count above once per method (a re-run method counted as
    saliency's 3 F), plus computing each method's maps (3 F each)."""
    names = [m for m, s in ev.METRICS.items() if not s.needs_masks]
    run = lambda: ev.evaluate(probe, probe.params, x, y, methods=list(TABLE_METHODS),  # noqa: E731
                              metrics=names, key=key, chunk_size=CHUNK)
    t = harness.timed(run, 1, warm=False)
    passes = len(TABLE_METHODS) * (sum(passes_per_metric[m] for m in names) + SALIENCY_PASSES)
    return harness.row("evaluate/table", t.seconds, gflops=passes * F * n / t.seconds / 1e9,
                       forward_equiv=passes, ratio=passes * n / t.seconds / rate,
                       settings=f"{n} digits, {len(TABLE_METHODS)} methods "
                                f"({', '.join(TABLE_METHODS)}) x {len(names)} metrics, one "
                                f"call (method re-runs compile inside it)")
