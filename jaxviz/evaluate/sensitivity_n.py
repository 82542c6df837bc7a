"""Sensitivity-n (Ancona et al. 2018, "Towards better understanding of gradient-based
attribution methods for deep neural networks"): a map is sensitive-n when, for every subset
S of n features, the summed attribution over S equals the output drop f(x) - f(x_S) when S
is set to the baseline. The measure, as the paper's curves: for each subset size n, the
Pearson correlation over `n_runs` random subsets between the two, per image.

All subsets of all sizes of all images are rows of one batched forward pass
(`common.forward_rows`); a subset of size n is the first n pixels of one random ordering
per row, so every size is the same traced computation and the sizes vmap with the runs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common
from jaxviz.evaluate.registry import Metric, MetricResult, register

# The paper's x axis runs over ratios of the input's features; these cover it on a log-like
# spacing (a size is at least one pixel; duplicates after rounding are dropped).
DEFAULT_RATIOS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
_SALT = 5  # the row keys' salt: other metrics' rows draw from other streams


def subset_masks(keys: jax.Array, sizes, n_runs: int, pixels: int) -> jax.Array:
    """The subsets the metric draws: (N, S, n_runs, P) bool, `sizes[s]` pixels in each.

    keys: (N,) per-image keys (`analysis.image_keys`). Row (s, r) of image i is the first
    sizes[s] pixels of the order of `pixels` uniform draws (top_k of the largest size), a
    uniformly random subset of that size."""
    sizes_ = jnp.asarray(sizes, jnp.int32)
    rk = common.row_keys(keys, len(sizes) * n_runs, _SALT)
    top = max(int(s) for s in sizes)

    def one(k, size):
        picked = jax.lax.top_k(jax.random.uniform(k, (pixels,)), top)[1]
        rank = jnp.full(pixels, pixels, jnp.int32).at[picked].set(jnp.arange(top, dtype=jnp.int32))
        return rank < size

    row_size = jnp.repeat(sizes_, n_runs)
    masks = jax.vmap(lambda kk: jax.vmap(one)(kk, row_size))(rk)
    return masks.reshape(keys.shape[0], len(sizes), n_runs, pixels)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "sizes", "n_runs", "fill_kind", "score", "chunk_size"))
def _core(fn, params, x, t, a, fill, keys, *, sizes, n_runs, fill_kind, score, chunk_size):
    n, h, w, _ = x.shape
    s = len(sizes)
    masks = subset_masks(keys, sizes, n_runs, h * w).reshape(n, s * n_runs, h * w)
    fill = common.fill_values(fill_kind, fill, x, keys)

    def make(i, k):
        return jnp.where(masks[i, k].reshape(h, w, 1), fill[i], x[i])

    out = common.forward_rows(fn, params, t, make, n, s * n_runs, score=score,
                              chunk_size=chunk_size)
    drop = (common.base_scores(fn, params, x, t, score, chunk_size)[:, None] - out)
    sums = (masks * a.sum(-1).reshape(n, 1, -1)).sum(-1)
    corr = common.pearson(sums.reshape(n * s, n_runs), drop.reshape(n * s, n_runs))
    corr = corr.reshape(n, s)
    return corr.mean(-1), corr


def check_sizes(sizes, pixels: int) -> tuple[int, ...]:
    """sizes: None (DEFAULT_RATIOS of the pixels) or subset sizes in [1, pixels] -> a
    sorted tuple of distinct ints."""
    if sizes is None:
        sizes = [max(1, round(r * pixels)) for r in DEFAULT_RATIOS]
    if isinstance(sizes, (int, str)) or not hasattr(sizes, "__iter__"):
        raise ValueError(f"sizes must be a list of subset sizes in [1, {pixels}]; got {sizes!r}")
    out = sorted({common.check_pixel_count(1, pixels, s, "sizes") for s in sizes})
    if not out:
        raise ValueError(f"sizes must be a non-empty list of subset sizes; got {sizes!r}")
    return tuple(out)


def sensitivity_n(fn, params, images, target, attributions, *, key, sizes=None,
                  n_runs: int = 100, baseline=0.0, score: str = "logit",
                  chunk_size=None) -> MetricResult:
    """Sensitivity-n (higher is better): scores (N,) the mean over the sizes of the
    correlations; curve (N, S): Pearson(sum of attributions over the subset, f(x) - f(x_S))
    over n_runs random subsets of each size n in `sizes`, per image (the paper's curve is
    its mean over images against n / P).

    Args:
      sizes: subset sizes (pixels; every channel of a pixel goes together), default
        DEFAULT_RATIOS of the pixels.
      n_runs: subsets per size (>= 2; the paper samples 100).
      baseline: the value removed pixels take: a number, an array like the images or a
        `common.FILLS` name (default 0, the paper's).
      score: "logit" (default) or another `analysis.SCORES` name.
    """
    x, t, a = common.prepare(fn, params, images, target, attributions)
    sizes = check_sizes(sizes, x.shape[1] * x.shape[2])
    kind, values = common.check_fill(baseline, x)
    common.check_choice(score, common.SCORES, "score")
    keys = common.metric_keys(key, x.shape[0], True, "subsets are drawn at random")
    scores, corr = _core(
        analysis.static_fn(fn), params, x, t, a, values, keys, sizes=sizes,
        n_runs=checks.positive_int(n_runs, "n_runs", 2), fill_kind=kind, score=score,
        chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(scores, corr)


register(Metric("sensitivity_n", sensitivity_n, "higher", "faithfulness", needs_key=True,
                quick=dict(sizes=(1, 8, 32), n_runs=4),
                paper="Ancona et al. 2018, Towards better understanding of gradient-based "
                      "attribution methods for deep neural networks"))
