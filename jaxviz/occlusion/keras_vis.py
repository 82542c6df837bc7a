"""The Keras recipe's occlusion, reproduced exactly: its `iter_occlusion` loop, vmapped.

    res = keras_vis_occlusion(probe, params, x, y, size=8)    # an Attribution
    res.map                  # (N, H, W): p(target) with each cell's gray square, per pixel
    res.extras["prob"]       # (N, nH, nW): p(target) per size x size cell
    res.extras["predicted"]  # (N, nH, nW): the class predicted with each cell occluded
    res.extras["counts"]     # (N, K): how many cells were predicted as each class

For Captum's definition (any window, stride and baseline) use `jaxviz.occlusion.occlusion`.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core import probe as probe_lib
from jaxviz.core.result import Attribution
from jaxviz.occlusion.exact import occluded_logits


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("fn", "size", "batch"))
def _keras_vis(fn, params, x, target, *, size, batch):
    h, w, c = x.shape[1:]
    ys, xs = np.arange(0, h, size), np.arange(0, w, size)
    cells = np.stack([a.ravel() for a in np.meshgrid(ys, xs, indexing="ij")], 1)
    # The recipe pastes a 5*size gray square whose corner is 2*size before the cell's corner.
    starts = np.concatenate([cells - 2 * size, np.zeros((len(cells), 1), int)], 1)
    logits = occluded_logits(fn, params, x, jnp.full(x.shape, 0.5, jnp.float32), starts,
                             (5 * size, 5 * size, c), batch)
    prob = analysis.target_score(logits, target[:, None], "prob")
    pred = jnp.argmax(logits, axis=-1)
    counts = jax.nn.one_hot(pred, logits.shape[-1], dtype=jnp.int32).sum(1)
    grid_shape = (x.shape[0], len(ys), len(xs))
    prob, pred = prob.reshape(grid_shape), pred.reshape(grid_shape)
    heat = jnp.repeat(jnp.repeat(prob, size, 1), size, 2)[:, :h, :w]
    return Attribution(heat, {"prob": prob, "predicted": pred, "counts": counts})


def keras_vis_occlusion(fn, params, images, target, *, size: int = 8,
                        chunk_size: int | None = None) -> Attribution:
    """The recipe's `iter_occlusion(image, size)` loop, vmapped: same occluded images, same
    tallies.

    fn(params, x) -> logits (N, K); images: (N, H, W, C); target: int or (N,) ints.
    For each size x size cell (corners 0, size, 2*size, ...), the recipe pads the image by
    2*size zeros, pastes a (5*size)^2 square of 0.5 centred on the cell and crops back, so
    pixels within 2*size of the cell turn gray (40 x 40 for size 8: most of a digit). Its
    numpy slice assignment fails where that square overruns the padded image (size 8 on
    28 x 28); here the square is simply clipped at the edge, as the crop would do.
    chunk_size: forward passes per step (default: one image's cells).
    Returns an `Attribution`, like every method: map (N, H, W) float32, the per-pixel heat
    map the recipe draws; extras "prob" (N, nH, nW) p(target) per cell, "predicted"
    (N, nH, nW) int32 the class predicted per cell, "counts" (N, K) int32 cells per class.
    """
    size = checks.positive_int(size, "size")
    x, t = analysis.check_inputs(fn, params, images, target)
    n_pos = math.ceil(x.shape[1] / size) * math.ceil(x.shape[2] / size)
    batch = n_pos if chunk_size is None else checks.positive_int(chunk_size, "chunk_size")
    return _keras_vis(probe_lib.static_view(fn), params, x, t, size=size, batch=batch)
