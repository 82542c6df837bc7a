"""Activation-maximization timings: batched (python loop / lax.scan) vs a per-unit loop.

    python -m experiments.bench_maximize [--quick]     # ~1-2 min on 2 CPU cores (quick ~30 s)

Rows: 10 classes x 256 steps and 32 conv1 filters x 256 steps of the seed's CNN (random
weights, Adam, TV regularizer), each done three ways: the keras-vis/Lucent way (a Python
loop over units and steps calling one jitted single-unit step), one jitted vmapped step in a
Python loop over steps, and the same inside `lax.scan`; plus a minimal reproduction of
XLA CPU's slowdown of backward convolutions inside a loop body (conv input-gradient at top
level vs inside `lax.scan`), to re-check against new jax releases.
"""
from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxviz import maximize as mx
from jaxviz.core import probe as probe_lib
from jaxviz.maximize import api, loop as loop_lib
from jaxviz.models import MnistCNN


def _timed(fn, repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    steady = statistics.median(times) if times else first
    return steady, max(first - steady, 0.0)


def matmul_peak(n=2048, repeats=5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n))
    dot = jax.jit(jnp.dot)
    s, _ = _timed(lambda: dot(a, a), repeats)
    return 2 * n ** 3 / s / 1e9


def _step_flops(probe, objs, kw) -> float:
    """FLOPs of one batched ascent step, from XLA's cost analysis."""
    cfg, params, unit_args, shared, key, *_ = api.prepare(probe, probe.params, objs, key=key_,
                                                          **kw)  # noqa: F841
    n = len(objs)
    keys = jnp.broadcast_to(jax.random.split(key), (n, 2))
    state = loop_lib.init(cfg, keys[:, 0])
    lowered = loop_lib.step.lower(cfg, params, shared, unit_args, keys[:, 1], state,
                                  jnp.int32(0))
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


key_ = jax.random.key(0)


def _maximize_rows(probe, name, objs, steps, repeats, peak):
    kw = dict(steps=steps, optimizer=mx.ADAM, shape=(28, 28, 1), input_range=(0.0, 1.0),
              regularizers=(mx.total_variation(1.0),), transforms=(), param="pixel",
              squash="sigmoid", checkpoints=())
    flops = _step_flops(probe, objs, {**kw, "loop": "python"}) * steps
    run = lambda loop, units: mx.maximize(
        probe, probe.params, units, key=key_, **kw, loop=loop).best
    forms = {
        "per-unit loop (keras-vis/Lucent style)":
            lambda: [run("python", [o]) for o in objs],
        "batched, python loop over steps": lambda: run("python", objs),
        "batched, lax.scan": lambda: run("scan", objs),
    }
    rows, secs = [], {}
    for form, fn in forms.items():
        s, c = _timed(fn, repeats)
        secs[form] = s
        rows.append(dict(name=f"maximize {name}: {form}",
                         settings=f"{len(objs)} units x {steps} steps, Adam 0.05, TV, "
                                  f"{jax.default_backend()}",
                         seconds=s, compile_s=c, gflops=flops / s / 1e9,
                         pct_peak=100 * flops / s / 1e9 / peak))
    base = secs["per-unit loop (keras-vis/Lucent style)"]
    prep = api.prepare(probe, probe.params, objs, key=key_, **kw, loop="auto")
    cfg, params, unit_args, shared, key, n = prep[0], prep[1], prep[2], prep[3], prep[4], len(objs)
    keys = jnp.broadcast_to(jax.random.split(key), (n, 2))
    choice = loop_lib.choose_loop(cfg, params, shared, unit_args, keys[:, 1],
                                  loop_lib.init(cfg, keys[:, 0]))
    auto = {"python": "batched, python loop over steps", "scan": "batched, lax.scan"}[choice]
    for r, form in zip(rows, forms):
        r["speedup_vs_per_unit"] = base / secs[form]
    rows.append(dict(name=f"maximize {name}: auto choice", settings=auto,
                     seconds=secs[auto], compile_s=None, gflops=flops / secs[auto] / 1e9,
                     speedup_vs_per_unit=base / secs[auto],
                     auto_is_fastest_batched=secs[auto] <= min(
                         secs["batched, python loop over steps"], secs["batched, lax.scan"])))
    return rows


def scan_slowdown_rows(n_iter, repeats):
    """Conv input-gradient (the seed CNN's conv2, batch 10) at top level vs inside lax.scan,
    with a forward conv of the same shapes as the control (XLA CPU runs that one fine)."""
    conv = lambda x, w: jax.lax.conv_general_dilated(
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

        s_top, c_top = _timed(python_loop, repeats)
        s_scan, c_scan = _timed(lambda scanned=scanned: scanned(x, w, g), repeats)
        out += [dict(name=f"repro: {what}, top-level jit in a python loop", settings=settings,
                     seconds=s_top, compile_s=c_top, gflops=flops / s_top / 1e9),
                dict(name=f"repro: {what}, inside lax.scan", settings=settings,
                     seconds=s_scan, compile_s=c_scan, gflops=flops / s_scan / 1e9,
                     slowdown_vs_top_level=s_scan / s_top)]
    return out


def rows(quick: bool = False) -> list[dict]:
    steps, repeats = (32, 1) if quick else (256, 3)
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    peak = matmul_peak()
    out = [dict(name="matmul 2048^2 peak", settings="jnp.dot f32", seconds=2 * 2048 ** 3 / peak / 1e9,
                compile_s=None, gflops=peak)]
    out += _maximize_rows(probe, "10 classes", [mx.class_logit(k) for k in range(10)],
                          steps, repeats, peak)
    out += _maximize_rows(probe, "32 conv1 filters", [mx.channel("conv1", c) for c in range(32)],
                          steps, repeats, peak)
    out += scan_slowdown_rows(16 if quick else 64, repeats)
    return out


if __name__ == "__main__":
    for r in rows(quick="--quick" in sys.argv):
        extra = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                 if k not in ("name", "settings", "seconds", "compile_s", "gflops")}
        comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        gf = "-" if r["gflops"] is None else f"{r['gflops']:.1f}"
        print(f"{r['name']:<60} {r['seconds']:8.3f}s compile {comp:>6} GFLOP/s {gf:>7} {extra}")
