"""`jaxviz.core.fastgrad`: each rewritten primitive and whole passes, before/after.

Every function is jitted with every tensor an argument; the variants of one table are timed
round robin (`harness.round_robin`), so ratios within one run survive a shared machine.
`ratio` = seconds / the table's first variant (the plain forward pass for whole passes, the
"before" variant for primitives); `cpu_s`/`cpu_ratio` the same in process CPU time, steadier
than wall time under contention. The reference figures are in docs/xla_cpu_backward.md.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax import lax

from experiments.bench import harness
from jaxviz.core import compile as compile_lib
from jaxviz.core import fastgrad
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN

_NHWC = ("NHWC", "HWIO", "NHWC")


def _rows(timed: dict, settings: str, base: str) -> list[dict]:
    return [harness.row(name, wall, settings=settings, compile_s=comp,
                        gflops=flops / wall / 1e9 if flops else None, cpu_s=cpu,
                        ratio=wall / timed[base][0], cpu_ratio=cpu / timed[base][1])
            for name, (wall, cpu, comp, flops) in timed.items()]


def _conv(padding):
    return lambda x, w: lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _vjp(f, i):
    """Jitted (*primals, cotangent) -> the cotangent of primal i."""
    return jax.jit(lambda *ar: jax.vjp(f, *ar[:-1])[1](ar[-1])[i])


class _PythonLoop:
    """`steps` calls of a jitted step in a Python loop, timed like a jitted function
    (`lower` gives one step's program for the FLOP count)."""

    def __init__(self, jstep, steps: int):
        self.jstep, self.steps = jstep, steps

    def __call__(self, c, *args):
        for _ in range(self.steps):
            c = self.jstep(c, *args)
        return c

    def lower(self, *args):
        return self.jstep.lower(*args)


def primitive_rows(batch: int, rounds: int) -> list[dict]:
    """Before/after for each rewrite, plus minimal reproductions of the XLA CPU slowness."""
    k = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k[0], (batch, 26, 26, 32))
    w = jax.random.normal(k[1], (3, 3, 32, 64)) * 0.1
    g = jax.random.normal(k[2], (batch, 24, 24, 64))
    a = jax.random.normal(k[3], (batch, 24, 24, 64))
    gp = g[:, ::2, ::2]
    valid, padded = _conv("VALID"), _conv(((0, 1), (0, 0)))
    fast_conv = fastgrad.fast(valid, enabled=True)

    def pool(v):
        return lax.reduce_window(v, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    fast_pool = fastgrad.fast(pool, enabled=True)
    tables = {
        "pool 2x2/2 backward": {
            "pool_bwd/reduce_window": (_vjp(pool, 0), (a, gp)),
            "pool_bwd/fastgrad": (_vjp(fast_pool, 0), (a, gp))},
        "conv2 materialized output (repro: unpadded YNNPACK conv)": {
            "conv_fwd/valid": (jax.jit(valid), (x, w)),
            "conv_fwd/padded+slice": (jax.jit(lambda x, w: padded(x, w)[:, :-1]), (x, w)),
            "conv_fwd/valid+sum (fused reduction)": (
                jax.jit(lambda x, w: valid(x, w).sum()), (x, w))},
        "conv2 weight gradient": {
            "conv_dw/native": (_vjp(valid, 1), (x, w, g)),
            "conv_dw/fastgrad": (_vjp(fast_conv, 1), (x, w, g))},
        "conv2 input gradient": {
            "conv_dx/native": (_vjp(valid, 0), (x, w, g)),
            "conv_dx/fastgrad": (_vjp(fast_conv, 0), (x, w, g))},
    }
    rows = []
    for settings, cases in tables.items():
        rows += _rows(harness.round_robin(cases, rounds), f"{settings}; batch {batch}",
                      next(iter(cases)))
    return rows


def scan_dx_rows(batch: int, steps: int, rounds: int) -> list[dict]:
    """Repro: conv2's input gradient, `steps` times in a lax.scan vs a Python loop."""
    k = jax.random.split(jax.random.key(4), 3)
    x = jax.random.normal(k[0], (batch, 26, 26, 32))
    w = jax.random.normal(k[1], (3, 3, 32, 64)) * 0.1
    g = jax.random.normal(k[2], (batch, 24, 24, 64))
    cases = {}
    valid = _conv("VALID")
    for label, conv in (("native", valid), ("fastgrad", fastgrad.fast(valid, enabled=True))):
        def body(c, x, w, conv=conv):  # the carry feeds the cotangent so nothing is hoisted
            return c * 0.99 + 0.01 * jax.vjp(conv, x, w)[1](c)[0][:, :24, :24, :1]

        cases[f"scan_dx/{label}/python loop"] = (_PythonLoop(jax.jit(body), steps), (g, x, w))
        cases[f"scan_dx/{label}/lax.scan"] = (jax.jit(
            lambda c, x, w, body=body: lax.scan(lambda c, _: (body(c, x, w), None), c, None,
                                                length=steps)[0]), (g, x, w))
    return _rows(harness.round_robin(cases, rounds),
                 f"conv2 input gradient x{steps}; batch {batch}", "scan_dx/native/python loop")


def loop_rows(batch: int, steps: int, rounds: int) -> list[dict]:
    """Gradient ascent on the input (activation maximization's loop), `steps` steps:
    a Python loop over a jitted step vs one jitted lax.scan vs scan(unroll=True)."""
    p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    x = jax.random.uniform(jax.random.key(3), (batch, 28, 28, 1))
    rows = []
    for label, fn in (("plain", p), ("fastgrad", fastgrad.fast(p, enabled=True))):
        def step(x, params, fn=fn):
            return x + 0.01 * jax.grad(lambda x: fn(params, x)[:, 3].sum())(x)

        def scanned(x, params, unroll, step=step):
            return lax.scan(lambda x, _: (step(x, params), None), x, None, length=steps,
                            unroll=unroll)[0]

        timed = harness.round_robin({
            f"loop/{label}/python loop of jitted step": (
                _PythonLoop(jax.jit(step), steps), (x, p.params)),
            f"loop/{label}/lax.scan": (jax.jit(partial(scanned, unroll=1)), (x, p.params)),
            f"loop/{label}/lax.scan unroll=True": (
                jax.jit(partial(scanned, unroll=True)), (x, p.params)),
        }, rounds)
        rows += _rows(timed, f"MnistCNN input-gradient ascent, {steps} steps; batch {batch}",
                      f"loop/{label}/python loop of jitted step")
    return rows


def whole_rows(batch: int, rounds: int) -> list[dict]:
    """Forward, input gradient and Adam train step of MnistCNN: plain, fastgrad, and jaxviz's
    defaults for this backend (`jaxviz.core.compile`'s policy, as its analyses get it)."""
    p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    x = jax.random.uniform(jax.random.key(2), (batch, 28, 28, 1))
    y = jnp.arange(batch) % 10
    opt = optax.adam(1e-3)
    cases = {}
    variants = (("plain", p, jax.jit), ("fastgrad", fastgrad.fast(p, enabled=True), jax.jit),
                ("jaxviz default", compile_lib.fast_model(p), compile_lib.jit))
    for label, fn, jit in variants:
        def loss(params, x, y, fn=fn):
            logits = fn(params, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        def saliency(params, x, y, fn=fn):
            return jax.grad(lambda x: jnp.take_along_axis(fn(params, x), y[:, None], 1).sum())(x)

        def step(params, opt_state, x, y, loss=loss):
            grads = jax.grad(loss)(params, x, y)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        if label != "jaxviz default":  # its forward is the plain one
            cases[f"whole/{label}/forward"] = (jax.jit(fn), (p.params, x))
        cases[f"whole/{label}/input_gradient"] = (jit(saliency), (p.params, x, y))
        cases[f"whole/{label}/train_step_adam"] = (
            jit(step), (p.params, opt.init(p.params), x, y))
    rows = _rows(harness.round_robin(cases, rounds), f"MnistCNN batch {batch}",
                 "whole/plain/forward")
    for r in rows:
        r["images_per_s"] = batch / r["seconds"]
    return rows


def rows(quick: bool = False) -> list[dict]:
    batch, rounds = (32, 3) if quick else (128, 7)
    return (whole_rows(batch, rounds) + primitive_rows(batch, rounds)
            + scan_dx_rows(batch // 4, 4 if quick else 8, rounds)
            + loop_rows(batch // 2, 4 if quick else 8, max(2, rounds // 2)))
