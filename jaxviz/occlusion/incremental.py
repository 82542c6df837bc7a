"""Incremental occlusion (after Krypton, Nakandala et al., SIGMOD 2019): recompute only what changed.

A patch changes a small box of the input; a convolution or pooling spreads it to a slightly
larger box of its output, elementwise ops keep it, and so on. The model's jaxpr (traced for
one image) is evaluated by `jaxviz.core.interpret` on (base value, change) pairs, with the
rule table of `box_rules`: for every value the change is None ("unchanged": the base
forward pass), a `Box` (per-position corners, one static size, and the new values inside
it, vmapped over positions) or `Full` (all new values, once a box no longer fits, e.g. a
flatten feeding a dense layer, which then runs as one matmul over every position); see
`boxes`. Corners are known for every position at trace time, so box sizes are static: the
max over positions.
Rules: elementwise ops, conv_general_dilated, reduce_window max/min/sum, reshape (splits and
merges, e.g. reshape-based pooling), transpose, reduce_sum, dot_general (a dense layer after
a box: base output + delta @ W[box rows], one matmul per distinct box when all positions run
in one chunk); calls (jit, checkpoint, custom_jvp/vjp) are inlined by the interpreter; any
other primitive runs on Full values (correct, no saving). A flatten keeps its box as a
`Flat` until a dense layer reads it, which then places only the box's delta into a band of
weight rows. If tracing fails, `check_supported` warns once and the exact path is used. The
program is many small materialized convolutions, which `jaxviz.occlusion` compiles with
`jaxviz.core.xla_cpu`'s options.
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxviz.core import interpret
from jaxviz.occlusion import box_rules
from jaxviz.occlusion.boxes import Box, to_full

_RULES = box_rules.RULES  # the live table (tests patch it)


def _evaluate(closed, pairs):
    """closed's output pairs for input (base, change) pairs."""
    return interpret.evaluate(closed, pairs, _RULES, lift=box_rules.lift,
                              default=box_rules.default, custom="inline", remat="inline")


def _input_box(image, baseline, starts, window, lo_chunk, aligned):
    """The occluded image as a Box of the (1, H, W, C) input. starts: (P, 3) corners."""
    shape = np.asarray(image.shape[1:])
    size = (1,) + tuple(window)
    lo_np = np.concatenate([np.zeros((len(starts), 1), int), np.minimum(starts, shape - window)], 1)
    corner = jnp.asarray(starts, jnp.int32)[lo_chunk]
    lo = jnp.concatenate([jnp.zeros((len(lo_chunk), 1), jnp.int32),
                          jnp.minimum(corner, jnp.asarray(shape - window, jnp.int32))], 1)

    def crop(c, s):
        idx = [s[d + 1] + lax.broadcasted_iota(jnp.int32, size, d + 1) for d in range(3)]
        inside = functools.reduce(jnp.logical_and, [(i >= c[d]) & (i < c[d] + window[d])
                                                    for d, i in enumerate(idx)])
        return jnp.where(inside, lax.dynamic_slice(baseline, tuple(s), size),
                         lax.dynamic_slice(image, tuple(s), size))
    return Box(lo_np, lo, size, jax.vmap(crop)(corner, lo), aligned)


def occluded_logits(fn, params, x, baseline, starts, window, batch):
    """Logits of every (image, patch) pair, (N, P, K), by incremental inference.

    x, baseline: (N, H, W, C); starts: (P, 3) corners in [0, dim); window: (h, w, c).
    Images go one at a time; positions in chunks of `batch`, every chunk vmapped.
    """
    p = len(starts)
    leaves, treedef = jax.tree.flatten(params)
    closed = jax.make_jaxpr(lambda ls, xi: fn(jax.tree.unflatten(treedef, ls), xi))(
        leaves, x[:1])
    chunk = min(batch, p)
    n_chunks = -(-p // chunk)
    idx = jnp.minimum(jnp.arange(n_chunks * chunk), p - 1).reshape(n_chunks, chunk)

    def one_image(args):
        xi, bi = args
        xi, bi = xi[None], bi[None]

        def one_chunk(ids):
            box = _input_box(xi, bi, starts, window, ids, aligned=n_chunks * chunk == p)
            ins = [(l, None) for l in leaves] + [(xi, box)]
            (base, ch), = _evaluate(closed, ins)
            full = to_full(base, ch)
            return jnp.broadcast_to(base, (chunk,) + base.shape) if full is None else full.vals
        return lax.map(one_chunk, idx).reshape(n_chunks * chunk, -1)[:p]
    return lax.map(one_image, (x, baseline))


@functools.lru_cache(maxsize=64)
def _check(fn, treedef, leaf_specs, image_shape, window):
    params = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaf_specs])
    x = jax.ShapeDtypeStruct((1,) + image_shape, jnp.float32)
    starts = np.zeros((1, 3), int)
    try:
        jax.eval_shape(lambda pr, xi: occluded_logits(fn, pr, xi, xi, starts, window, 1), params, x)
        return "incremental"
    except Exception as err:  # noqa: BLE001 - any failure means: use the exact path instead
        warnings.warn(f"occlusion(method='incremental'): this model is not supported "
                      f"({type(err).__name__}: {err}); using the exact path instead",
                      RuntimeWarning, stacklevel=3)
        return "exact"


def check_supported(fn, params, image_shape, window) -> str:
    """'incremental' if the interpreter handles fn, else 'exact' (warning once per model)."""
    leaves, treedef = jax.tree.flatten(params)
    specs = tuple((tuple(l.shape), l.dtype) for l in leaves)  # l.dtype: PRNG key dtypes too
    return _check(fn, treedef, specs, tuple(image_shape), tuple(window))
