"""All targets at once: the 10 class maps of a method from one program (target="all")
against 10 separate calls, and against one call (the goal: all 10 for at most 3x one).

The seed's MnistCNN (random weights) on 64 bundled digits; saliency and Integrated
Gradients (50 Gauss-Legendre steps). "all" runs the forward passes once and vmaps the
backward pass over the 10 output cotangents (jaxviz.core.method.run); "10 calls" is a
Python loop over the classes, one compiled program reused. Rows: `ratio_to_one` = the
row's time over one call's; the "all" rows also carry `speedup_vs_calls` = 10 calls' time
over "all"'s. Cases are timed round-robin, so a shared machine's slow spells hit each alike.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from experiments.bench import harness
from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

N = 64
K = 10


def _cases(probe, x, y, method, opts):
    p = probe.params

    def one():
        return method(probe, p, x, y, **opts).map

    def every():
        return method(probe, p, x, "all", **opts).map

    def separate():
        return [method(probe, p, x, k, **opts).map for k in range(K)]
    return {"one": (one, ()), "all": (every, ()), "calls": (separate, ())}


def rows(quick: bool = False) -> list[dict]:
    data = load_bundled()
    n = 16 if quick else N
    x, y = data.x_val[:n], np.asarray(data.y_val[:n])
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    steps = 8 if quick else 50
    rounds = 1 if quick else 3
    out = []
    for label, method, opts, settings in (
            ("saliency", A.saliency, {}, f"{n} digits"),
            ("integrated_gradients", A.integrated_gradients, dict(n_steps=steps),
             f"{n} digits, {steps} steps")):
        cases = _cases(probe, x, y, method, opts)
        # Same numbers both ways before timing them: map k of "all" is the call for class k.
        every, calls = cases["all"][0](), cases["calls"][0]()
        err = max(float(np.abs(np.asarray(every[:, k]) - np.asarray(c)).max())
                  for k, c in enumerate(calls))
        t = harness.round_robin(cases, rounds)
        one_s, all_s, calls_s = t["one"][0], t["all"][0], t["calls"][0]
        out += [
            harness.row(f"targets/{label}/one_class", one_s, settings=settings,
                        compile_s=t["one"][2], ratio_to_one=1.0),
            harness.row(f"targets/{label}/all_10", all_s, settings=settings,
                        compile_s=t["all"][2], ratio_to_one=all_s / one_s,
                        speedup_vs_calls=calls_s / all_s, max_abs_diff=err),
            harness.row(f"targets/{label}/10_calls", calls_s, settings=settings,
                        compile_s=t["calls"][2], ratio_to_one=calls_s / one_s),
        ]
        jax.clear_caches()
    return out
