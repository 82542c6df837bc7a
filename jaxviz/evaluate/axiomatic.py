"""Axiomatic properties a map may promise.

    completeness     Sundararajan et al. 2017's completeness, IG's delta generalised: |sum of
                     the map - (f(x) - f(baseline))| per image (lower is better; Quantus'
                     Completeness reports whether it is below a threshold).
    non_sensitivity  Nguyen & Martinez 2020, Quantus' NonSensitivity: pixels whose |a| (divided
                     by its max) is below eps should be exactly those whose removal to the
                     baseline leaves the score within eps; the count of pixels where the two
                     disagree (lower is better). Pixels are removed pixels_per_step at a time,
                     zero- and non-zero-attribution pixels in separate groups (raster order).
"""
from __future__ import annotations

import functools

import jax.numpy as jnp

from jaxviz.core import analysis
from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common
from jaxviz.evaluate.registry import Metric, MetricResult, register


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "fill_kind", "score", "chunk_size"))
def _completeness_core(fn, params, x, t, a, fill, *, fill_kind, score, chunk_size):
    base = common.fill_values(fill_kind, fill, x, None)
    both = jnp.concatenate([x, base])
    f = common.base_scores(fn, params, both, jnp.concatenate([t, t]), score, chunk_size)
    gap = f[:x.shape[0]] - f[x.shape[0]:]
    return jnp.abs(a.sum((1, 2, 3)) - gap), gap


def completeness(fn, params, images, target, attributions, *, baseline=0.0,
                 score: str = "logit", key=None, chunk_size=None) -> MetricResult:
    """|sum(a) - (f(x) - f(baseline))|, (N,); curve (N, 1): f(x) - f(baseline)."""
    x, t, a = common.prepare(fn, params, images, target, attributions)
    kind, values = common.check_fill(baseline, x)
    if kind == "uniform":
        raise ValueError("baseline='uniform' is random; completeness needs a fixed baseline")
    common.check_choice(score, common.SCORES, "score")
    err, gap = _completeness_core(analysis.static_fn(fn), params, x, t, a, values,
                                  fill_kind=kind, score=score,
                                  chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(err, gap[:, None])


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "per_step", "eps", "fill_kind", "score", "chunk_size"))
def _non_sensitivity_core(fn, params, x, t, a, fill, *, per_step, eps, fill_kind, score,
                          chunk_size):
    n, h, w, _ = x.shape
    p = h * w
    v = jnp.abs(a).sum(-1).reshape(n, -1)
    m = v.max(-1, keepdims=True)
    zero = v / jnp.where(m == 0, 1.0, m) < eps  # (N, P)
    # Groups of per_step pixels, zero-attribution pixels first, each kind in raster order.
    n_zero = zero.sum(-1, keepdims=True)
    pos = jnp.cumsum(zero, -1) - 1
    pos = jnp.where(zero, pos, jnp.cumsum(~zero, -1) - 1)
    first = jnp.where(zero, 0, (n_zero + per_step - 1) // per_step)
    group = first + pos // per_step
    n_groups = p // per_step + 1
    fill = common.fill_values(fill_kind, fill, x, None)

    def make(i, k):
        return jnp.where((group[i] == k).reshape(h, w, 1), fill[i], x[i])

    out = common.forward_rows(fn, params, t, make, n, n_groups, score=score,
                              chunk_size=chunk_size)
    base = common.base_scores(fn, params, x, t, score, chunk_size)
    unchanged = jnp.abs(base[:, None] - jnp.take_along_axis(out, group, 1)) < eps
    return (unchanged ^ zero).sum(-1).astype(jnp.float32), out


def non_sensitivity(fn, params, images, target, attributions, *, pixels_per_step: int = 8,
                    eps: float = 1e-5, baseline="black", score: str = "prob", key=None,
                    chunk_size=None) -> MetricResult:
    """Non-sensitivity (lower is better): pixels where "zero attribution" and "no effect"
    disagree, (N,); curve (N, P / pixels_per_step + 1): the score with each group removed."""
    x, t, a = common.prepare(fn, params, images, target, attributions)
    step = common.divides(pixels_per_step, x.shape[1] * x.shape[2], "pixels_per_step")
    kind, values = common.check_fill(baseline, x)
    if kind == "uniform":
        raise ValueError("baseline='uniform' is random; non_sensitivity needs a fixed baseline")
    common.check_choice(score, common.SCORES, "score")
    count, out = _non_sensitivity_core(
        analysis.static_fn(fn), params, x, t, a, values, per_step=step,
        eps=common.check_number(eps, "eps", strict=True), fill_kind=kind, score=score,
        chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(count, out)


for _m in (
    Metric("completeness", completeness, "lower", "axiomatic",
           paper="Sundararajan et al. 2017, Axiomatic attribution for deep networks"),
    Metric("non_sensitivity", non_sensitivity, "lower", "axiomatic",
           quick=dict(pixels_per_step=16),
           paper="Nguyen & Martinez 2020, On quantitative aspects of model interpretability"),
):
    register(_m)
