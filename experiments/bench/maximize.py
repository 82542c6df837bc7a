"""Activation maximization: batched (Python loop / lax.scan) vs a per-unit loop.

Rows: 10 classes x 256 steps and 32 conv1 filters x 256 steps of the seed's CNN (random
weights, Adam, TV regularizer), each done three ways: the keras-vis/Lucent way (a Python
loop over units calling `maximize` on one unit), all units in one jitted vmapped step in a
Python loop over steps, and the same inside `lax.scan`; which of the two `loop="auto"`
picks; plus a minimal reproduction of XLA CPU's slowdown of backward convolutions inside a
loop body (conv input gradient at top level vs inside `lax.scan`), to re-check against new
jax releases. FLOPs of a step come from XLA's cost analysis.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from experiments.bench import harness
from jaxviz import maximize as mx
from jaxviz.core import probe as probe_lib
from jaxviz.maximize import api
from jaxviz.maximize import loop as loop_lib
from jaxviz.models import MnistCNN

KEY = jax.random.key(0)
PER_UNIT = "per-unit loop (keras-vis/Lucent style)"
FORMS = {"python": "batched, python loop over steps", "scan": "batched, lax.scan"}


def _one_step(probe, objs, kw) -> tuple[float, str]:
    """(XLA's FLOPs of one batched ascent step, the loop form `loop="auto"` picks)."""
    cfg, params, unit_args, shared, key, *_ = api.plan_ascent(
        probe, probe.params, objs, key=KEY, loop="auto", **kw)
    keys = jax.random.split(key, len(objs))
    state = loop_lib.init(cfg, keys)
    args = (cfg, params, shared, unit_args, keys, state)
    cost = loop_lib.step.lower(*args, jnp.int32(0)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)), loop_lib.choose_loop(*args)


def _maximize_rows(probe, name, objs, steps, repeats):
    kw = dict(steps=steps, optimizer=mx.ADAM, shape=(28, 28, 1), input_range=(0.0, 1.0),
              regularizers=(mx.total_variation(1.0),), transforms=(), param="pixel",
              squash="sigmoid", checkpoints=())
    step_flops, auto = _one_step(probe, objs, kw)
    flops = step_flops * steps
    run = lambda loop, units: mx.maximize(  # noqa: E731
        probe, probe.params, units, key=KEY, **kw, loop=loop).best
    forms = {PER_UNIT: lambda: [run("python", [o]) for o in objs],
             FORMS["python"]: lambda: run("python", objs),
             FORMS["scan"]: lambda: run("scan", objs)}
    settings = f"{len(objs)} units x {steps} steps, Adam 0.05, TV, {jax.default_backend()}"
    secs, rows = {}, []
    for form, fn in forms.items():
        t = harness.timed(fn, repeats)
        secs[form] = t.seconds
        rows.append(harness.row(f"maximize {name}: {form}", t.seconds, settings=settings,
                                compile_s=t.compile_s, gflops=flops / t.seconds / 1e9))
    for r, form in zip(rows, forms):
        r["speedup_vs_per_unit"] = secs[PER_UNIT] / secs[form]
    chosen = secs[FORMS[auto]]
    rows.append(harness.row(
        f"maximize {name}: auto choice", chosen, settings=FORMS[auto],
        gflops=flops / chosen / 1e9, speedup_vs_per_unit=secs[PER_UNIT] / chosen,
        auto_is_fastest_batched=chosen <= min(secs[f] for f in FORMS.values())))
    return rows


def scan_slowdown_rows(n_iter, repeats):
    """Conv input-gradient (the seed CNN's conv2, batch 10) at top level vs inside lax.scan,
    with a forward conv of the same shapes as the control (XLA CPU runs that one fine)."""
    conv = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def backward(x, w, g):
        # the cotangent depends on the carry, else XLA hoists the whole vjp out of the loop
        return x + 1e-3 * jax.vjp(lambda x: conv(x, w), x)[1](g * jnp.mean(x))[0]

    def forward(x, w, g):
        return x + 1e-3 * jnp.mean(conv(x, w) * g, axis=-1, keepdims=True)[:, :1, :1]

    ks = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(ks[0], (10, 26, 26, 32))
    w = jax.random.normal(ks[1], (3, 3, 32, 64)) * 0.05
    g = jax.random.normal(ks[2], (10, 24, 24, 64))
    flops = 2 * 10 * 24 * 24 * 64 * 3 * 3 * 32 * n_iter
    settings = (f"conv 3x3 32->64 VALID, batch 10, 26x26 input, {n_iter} iterations, "
                f"jax {jax.__version__}, {jax.default_backend()}")
    out = []
    for what, update in (("backward conv (input gradient)", backward),
                         ("forward conv (control)", forward)):
        top = jax.jit(update)
        scanned = jax.jit(lambda x, w, g, update=update: jax.lax.scan(
            lambda c, _: (update(c, w, g), None), x, None, length=n_iter)[0])

        def python_loop(top=top):
            c = x
            for _ in range(n_iter):
                c = top(c, w, g)
            return c

        t_top = harness.timed(python_loop, repeats)
        t_scan = harness.timed(lambda scanned=scanned: scanned(x, w, g), repeats)
        out += [harness.row(f"repro: {what}, top-level jit in a python loop", t_top.seconds,
                            settings=settings, compile_s=t_top.compile_s,
                            gflops=flops / t_top.seconds / 1e9),
                harness.row(f"repro: {what}, inside lax.scan", t_scan.seconds,
                            settings=settings, compile_s=t_scan.compile_s,
                            gflops=flops / t_scan.seconds / 1e9,
                            slowdown_vs_top_level=t_scan.seconds / t_top.seconds)]
    return out


def rows(quick: bool = False) -> list[dict]:
    steps, repeats = (32, 1) if quick else (256, 3)
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    return (_maximize_rows(probe, "10 classes", [mx.class_logit(k) for k in range(10)],
                           steps, repeats)
            + _maximize_rows(probe, "32 conv1 filters",
                             [mx.channel("conv1", c) for c in range(32)], steps, repeats)
            + scan_slowdown_rows(16 if quick else 64, repeats))
