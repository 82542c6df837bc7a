"""Faithfulness from random perturbations: does the attribution of what is perturbed predict
how much the score moves?

    faithfulness_correlation  Bhatt et al. 2020 (Quantus' definition): n_runs random subsets
                              of subset_size pixels set to the baseline; Pearson correlation
                              of the subset's summed attribution with f(x) - f(x_S).
    monotonicity_correlation  Nguyen & Martinez 2020 (Quantus' MonotonicityCorrelation):
                              pixels in ascending |attribution|, pixels_per_step at a time,
                              each group replaced by U[0, 1) noise n_samples times; Spearman
                              correlation of the group's attribution with the mean squared
                              change of the score (Quantus' 1 / f(x)^2 factor is a positive
                              constant per image and leaves a rank correlation unchanged).
    infidelity                Yeh et al. 2019, Captum's `infidelity`: E_I[(I . a -
                              (f(x) - f(x - I)))^2] over n_samples perturbations I, with
                              Captum's `normalize` (optimal scaling of a) and
                              `multiply_by_inputs` (I divided by x - baseline, for maps that
                              already multiply by the input: gradient x input, IG).
Every perturbed copy is one row of `common.forward_rows` (all runs of all images batched).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common
from jaxviz.evaluate.registry import Metric, MetricResult, register

PERTURBATIONS = ("gaussian", "subset")


def _random_masks(keys, n_rows: int, pixels: int, size: int, salt: int) -> jax.Array:
    """(N, n_rows, P) bool: `size` distinct pixels per row, drawn from each image's key.

    The pixels of the `size` largest of P uniform draws: a uniformly random subset, and on
    a CPU several times cheaper than a full permutation (a sort-based shuffle)."""
    rk = common.row_keys(keys, n_rows, salt)

    def one(k):
        picked = jax.lax.top_k(jax.random.uniform(k, (pixels,)), size)[1]
        return jnp.zeros(pixels, bool).at[picked].set(True)
    return jax.vmap(jax.vmap(one))(rk)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "n_runs", "subset_size", "fill_kind", "score", "chunk_size"))
def _correlation_core(fn, params, x, t, a, fill, keys, *, n_runs, subset_size, fill_kind, score,
                      chunk_size):
    n, h, w, _ = x.shape
    masks = _random_masks(keys, n_runs, h * w, subset_size, salt=2)
    fill = common.fill_values(fill_kind, fill, x, keys)

    def make(i, k):
        return jnp.where(masks[i, k].reshape(h, w, 1), fill[i], x[i])

    out = common.forward_rows(fn, params, t, make, n, n_runs, score=score, chunk_size=chunk_size)
    delta = common.base_scores(fn, params, x, t, score, chunk_size)[:, None] - out
    sums = (masks * a.sum(-1).reshape(n, 1, -1)).sum(-1)
    return common.pearson(sums, delta), delta


def faithfulness_correlation(fn, params, images, target, attributions, *, key,
                             n_runs: int = 100, subset_size: int | None = None,
                             baseline="black", score: str = "logit",
                             chunk_size=None) -> MetricResult:
    """Faithfulness correlation (higher is better), (N,) in [-1, 1]; curve (N, n_runs): the
    score drop of each run. subset_size: pixels per subset (default a quarter of them)."""
    x, t, a = common.prepare(fn, params, images, target, attributions)
    pixels = x.shape[1] * x.shape[2]
    size = pixels // 4 if subset_size is None else subset_size
    size = common.check_pixel_count(x.shape[1], x.shape[2], size, "subset_size")
    kind, values = common.check_fill(baseline, x)
    common.check_choice(score, common.SCORES, "score")
    keys = common.metric_keys(key, x.shape[0], True, "subsets are drawn at random")
    scores, delta = _correlation_core(
        analysis.static_fn(fn), params, x, t, a, values, keys,
        n_runs=checks.positive_int(n_runs, "n_runs", 2), subset_size=size, fill_kind=kind,
        score=score, chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(scores, delta)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "per_step", "n_samples", "score", "chunk_size"))
def _monotonicity_core(fn, params, x, t, a, keys, *, per_step, n_samples, score, chunk_size):
    n, h, w, _ = x.shape
    units, n_units = common.grid_units(h, w, 1)
    rank = common.unit_ranks(jnp.abs(a), units, n_units, "lerf")  # ascending |a|
    group = rank // per_step  # (N, H, W)
    n_groups = (h * w) // per_step
    rk = common.row_keys(keys, n_groups * n_samples, salt=3)

    def make(i, r):
        noise = jax.random.uniform(rk[i, r], x.shape[1:])
        return jnp.where((group[i] == r // n_samples)[..., None], noise, x[i])

    out = common.forward_rows(fn, params, t, make, n, n_groups * n_samples, score=score,
                              chunk_size=chunk_size).reshape(n, n_groups, n_samples)
    base = common.base_scores(fn, params, x, t, score, chunk_size)
    change = ((out - base[:, None, None]) ** 2).mean(-1)
    ids = group.reshape(n, -1)
    atts = jax.vmap(lambda g, v: jax.ops.segment_sum(v, g, n_groups))(
        ids, jnp.abs(a).sum(-1).reshape(n, -1))
    return common.spearman(atts, change), change


def monotonicity_correlation(fn, params, images, target, attributions, *, key,
                             pixels_per_step: int = 28, n_samples: int = 10,
                             score: str = "prob", chunk_size=None) -> MetricResult:
    """Monotonicity correlation (higher is better), (N,) in [-1, 1]; curve (N, G): the mean
    squared score change of each group, G = P / pixels_per_step."""
    x, t, a = common.prepare(fn, params, images, target, attributions)
    step = common.divides(pixels_per_step, x.shape[1] * x.shape[2], "pixels_per_step")
    common.check_choice(score, common.SCORES, "score")
    keys = common.metric_keys(key, x.shape[0], True, "noise is drawn at random")
    scores, change = _monotonicity_core(
        analysis.static_fn(fn), params, x, t, a, keys, per_step=step,
        n_samples=checks.positive_int(n_samples, "n_samples"), score=score,
        chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(scores, change)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=(
    "fn", "n_samples", "perturbation", "sigma", "fraction", "multiply_by_inputs", "normalize",
    "score", "chunk_size"))
def _infidelity_core(fn, params, x, t, a, baseline, keys, *, n_samples, perturbation, sigma,
                     fraction, multiply_by_inputs, normalize, score, chunk_size):
    n = x.shape[0]
    rk = common.row_keys(keys, n_samples, salt=4)
    base = jnp.broadcast_to(baseline, x.shape)

    def perturbed(i, k):
        if perturbation == "gaussian":
            return x[i] - sigma * jax.random.normal(rk[i, k], x.shape[1:])
        drop = jax.random.uniform(rk[i, k], x.shape[1:3] + (1,)) < fraction
        return jnp.where(drop, base[i], x[i])

    def dot(i, k):  # I . a, with Captum's I = x - x~ (divided by x - baseline)
        pert = x[i] - perturbed(i, k)
        if multiply_by_inputs:
            den = x[i] - base[i]
            pert = pert / jnp.where(den == 0, 1.0, den)
        return (pert * a[i]).sum()

    out = common.forward_rows(fn, params, t, perturbed, n, n_samples, score=score,
                              chunk_size=chunk_size)
    diff = common.base_scores(fn, params, x, t, score, chunk_size)[:, None] - out
    ia = jax.vmap(lambda i: jax.vmap(lambda k: dot(i, k))(jnp.arange(n_samples)))(jnp.arange(n))
    if normalize:
        den = (ia * ia).mean(-1, keepdims=True)
        beta = (ia * diff).mean(-1, keepdims=True) / jnp.where(den == 0, 1.0, den)
        ia = beta * ia
    err = (ia - diff) ** 2
    return err.mean(-1), err


def infidelity(fn, params, images, target, attributions, *, key, n_samples: int = 10,
               perturbation: str = "gaussian", sigma: float = 0.1, fraction: float = 0.25,
               baseline=0.0, multiply_by_inputs: bool = False, normalize: bool = False,
               score: str = "logit", chunk_size=None) -> MetricResult:
    """Infidelity (lower is better), (N,); curve (N, n_samples): each sample's squared error.

    perturbation: "gaussian" (x - I with I ~ N(0, sigma^2) per value) or "subset" (each pixel
    set to `baseline` with probability `fraction`). normalize / multiply_by_inputs: Captum's."""
    x, t, a = common.prepare(fn, params, images, target, attributions)
    common.check_choice(perturbation, PERTURBATIONS, "perturbation")
    common.check_choice(score, common.SCORES, "score")
    kind, values = common.check_fill(baseline, x)
    if kind in ("uniform", "blur"):
        raise ValueError(f"baseline for infidelity must be a number, an array or one of "
                         f"('black', 'white', 'mean'); got {baseline!r}")
    if kind != "array":
        values = common.fill_values(kind, values, x, None)
    keys = common.metric_keys(key, x.shape[0], True, "perturbations are drawn at random")
    scores, err = _infidelity_core(
        analysis.static_fn(fn), params, x, t, a, values, keys,
        n_samples=checks.positive_int(n_samples, "n_samples"), perturbation=perturbation,
        sigma=common.check_number(sigma, "sigma"),
        fraction=common.check_number(fraction, "fraction"),
        multiply_by_inputs=bool(multiply_by_inputs), normalize=bool(normalize), score=score,
        chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(scores, err)


for _m in (
    Metric("faithfulness_correlation", faithfulness_correlation, "higher", "faithfulness",
           needs_key=True, quick=dict(n_runs=8, subset_size=16),
           paper="Bhatt et al. 2020, Evaluating and aggregating feature-based model "
                 "explanations"),
    Metric("monotonicity_correlation", monotonicity_correlation, "higher", "faithfulness",
           needs_key=True, quick=dict(pixels_per_step=16, n_samples=2),
           paper="Nguyen & Martinez 2020, On quantitative aspects of model interpretability"),
    # Normalised in the table: maps of different methods live on different scales.
    Metric("infidelity", infidelity, "lower", "faithfulness", needs_key=True,
           defaults=dict(normalize=True), quick=dict(n_samples=4, normalize=True),
           paper="Yeh et al. 2019, On the (in)fidelity and sensitivity of explanations"),
):
    register(_m)
