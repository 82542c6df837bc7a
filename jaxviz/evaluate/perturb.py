"""Perturbation curves: the one compiled core behind deletion, insertion, pixel flipping,
region perturbation, IROF and ROAD, and ROAD's noisy linear imputation.

A curve perturbs each image's units (pixels, or the cells of a grid) in the order of their
summed attribution: at step k the first counts[k] units are replaced by the fill (or, for
insertion, taken from the image into the fill). Every (image, step) pair is one forward
pass of `common.forward_rows`, so a whole curve is batched and `chunk_size` bounds memory.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common

COMPOSE = ("delete", "insert", "impute")
# ROAD's neighbour weights (Rong et al. 2022): direct neighbours 1/6, diagonal ones 1/12.
NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12),
              (0, -1, 1 / 6), (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6))


def _shift(v: jax.Array, dy: int, dx: int) -> jax.Array:
    """out[y, x] = v[y + dy, x + dx], zero outside. v: (H, W, C)."""
    h, w = v.shape[:2]
    p = jnp.pad(v, ((1, 1), (1, 1), (0, 0)))
    return p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def _neighbour_sum(v: jax.Array) -> jax.Array:
    return sum(wt * _shift(v, dy, dx) for dy, dx, wt in NEIGHBOURS)


def impute(x: jax.Array, unknown: jax.Array, steps: int) -> jax.Array:
    """Linear imputation of the unknown pixels from their neighbours (ROAD, before noise):
    each unknown value is the weighted mean of its in-image neighbours, known neighbours
    fixed. x: (H, W, C), unknown: (H, W) bool -> (H, W, C) with known pixels unchanged.

    The system deg_i z_i - sum_{unknown j} w_ij z_j = sum_{known j} w_ij x_j is symmetric
    and diagonally dominant, so `steps` conjugate-gradient iterations (all channels at once,
    a fixed count so batched and single runs agree) solve it; a region with no known
    neighbour at all stays 0."""
    m = unknown[..., None].astype(x.dtype)
    deg = _neighbour_sum(jnp.ones_like(m))

    def op(z):
        return m * (deg * z - _neighbour_sum(m * z))

    def dot(a, b):
        return (a * b).sum((0, 1))

    b = m * _neighbour_sum((1 - m) * x)

    def body(_, state):
        z, r, p, rs = state
        ap = op(p)
        pap = dot(p, ap)
        alpha = jnp.where(pap > 0, rs / jnp.where(pap > 0, pap, 1.0), 0.0)
        z, r = z + alpha * p, r - alpha * ap
        rs_new = dot(r, r)
        beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        return z, r, r + beta * p, rs_new

    z = jax.lax.fori_loop(0, steps, body, (jnp.zeros_like(b), b, b, dot(b, b)))[0]
    return jnp.where(unknown[..., None], z, x)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "cell", "counts", "order", "compose", "fill_kind", "score", "chunk_size",
    "blur_sigma", "noise", "cg_steps", "reduce"))
def curve_core(fn, params, x, t, a, fill, keys, *, cell, counts, order, compose, fill_kind,
               score, chunk_size, blur_sigma, noise, cg_steps, reduce):
    """reduce(curve (N, S), base (N,)) for S = len(counts) steps: the score after each
    step and the unperturbed score -> (scores (N,), the curve to report)."""
    n, h, w, _ = x.shape
    units, n_units = common.grid_units(h, w, cell)
    rank = common.unit_ranks(a, units, n_units, order)
    counts_ = jnp.asarray(counts, jnp.int32)
    fill = common.fill_values(fill_kind, fill, x, keys, blur_sigma) if compose != "impute" else None
    rkeys = common.row_keys(keys, len(counts), salt=1) if compose == "impute" else None

    def make(i, k):
        mask = rank[i] < counts_[k]
        if compose == "delete":
            return jnp.where(mask[..., None], fill[i], x[i])
        if compose == "insert":
            return jnp.where(mask[..., None], x[i], fill[i])
        z = impute(x[i], mask, cg_steps)
        eps = noise * jax.random.normal(rkeys[i, k], x.shape[1:])
        return jnp.where(mask[..., None], z + eps, x[i])

    curve = common.forward_rows(fn, params, t, make, n, len(counts), score=score,
                                chunk_size=chunk_size)
    base = common.base_scores(fn, params, x, t, score, chunk_size)
    return reduce(curve, base)
