"""Complexity: how concentrated is a map? (No forward passes: the map alone.)

    sparseness  Chalasani et al. 2020, Quantus' Sparseness: the Gini index of |a| (divided by
                its max, plus 1e-7 as Quantus does), 1 for a single non-zero value, 0 for a
                constant map (higher is better).
    complexity  Bhatt et al. 2020, Quantus' Complexity: the entropy of |a| / sum |a|
                (natural log, 1e-12 inside it), 0 for one value, log(P) for a constant map
                (lower is better).
Both take the map as given: every value of an (N, H, W, C) map counts.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common
from jaxviz.evaluate.registry import Metric, MetricResult, register


def _unit_abs(a: jax.Array) -> jax.Array:
    v = jnp.abs(a.reshape(a.shape[0], -1))
    m = v.max(-1, keepdims=True)
    return v / jnp.where(m == 0, 1.0, m)


@functools.partial(compile_lib.jit, kind="forward")
def _gini(a):
    v = common.sort_values(_unit_abs(a) + 1e-7)
    p = v.shape[-1]
    i = jnp.arange(1, p + 1, dtype=v.dtype)
    return ((2 * i - p - 1) * v).sum(-1) / (p * v.sum(-1))


@functools.partial(compile_lib.jit, kind="forward")
def _entropy(a):
    v = _unit_abs(a)
    s = v.sum(-1, keepdims=True)
    q = v / jnp.where(s == 0, 1.0, s)
    return -(q * jnp.log(q + 1e-12)).sum(-1)


def sparseness(fn, params, images, target, attributions, *, key=None,
               chunk_size=None) -> MetricResult:
    """Gini index of each map, (N,) in [0, 1) (higher is better)."""
    _, _, a = common.prepare(fn, params, images, target, attributions)
    return MetricResult(_gini(a), None)


def complexity(fn, params, images, target, attributions, *, key=None,
               chunk_size=None) -> MetricResult:
    """Entropy of each map's |values| as a distribution, (N,) in [0, log P] (lower is better)."""
    _, _, a = common.prepare(fn, params, images, target, attributions)
    return MetricResult(_entropy(a), None)


for _m in (
    Metric("sparseness", sparseness, "higher", "complexity",
           paper="Chalasani et al. 2020, Concise explanations of neural networks using "
                 "adversarial training"),
    Metric("complexity", complexity, "lower", "complexity",
           paper="Bhatt et al. 2020, Evaluating and aggregating feature-based model "
                 "explanations"),
):
    register(_m)
