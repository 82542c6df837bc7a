"""Randomisation: a map that explains the model must change when the model or the class
does. Both metrics re-run the attribution method (`rerun`) and compare maps per image.

    model_parameter_randomisation  Adebayo et al. 2018, the cascading check as a metric:
        layers re-initialised cumulatively from the output down
        (`attribution.sanity.randomize_layers`: the parameter pytree redrawn leaf by leaf,
        the model itself untouched; BatchNorm statistics reset to mean 0, variance 1 and
        norm scales drawn positive, so every step is a valid model; the default layers are
        `sanity.cascade_layers`, each parameter once); curve (N, L): similarity to the
        trained model's map after each layer; score its mean (lower is better). A map with
        NaN/inf gives a NaN similarity (and a warning), never a number. Needs a Probe.
    random_logit                   Sixt et al. 2020 (Quantus' RandomLogit): the map for a
        class drawn uniformly from the other classes; score: its similarity to the map for
        the target (lower is better).
Similarities (per image): "spearman" (average ranks for ties, as
`attribution.rank_correlation`), "pearson", or "ssim": skimage's structural_similarity
defaults (7 x 7 uniform windows, sample covariance, K1 0.01, K2 0.03) on the (H, W) pixel
maps, each first divided by its max |value| and the data range taken from the pair, as
Quantus does (Quantus flattens the maps to 1-D first; here windows are 2-D squares).
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.attribution import sanity
from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate import common, rerun
from jaxviz.evaluate.registry import Metric, MetricResult, register

SIMILARITIES = ("spearman", "pearson", "ssim")
SSIM_WINDOW = 7


def _box_mean(v: jax.Array, win: int) -> jax.Array:
    """Mean over every win x win window fully inside v (N, H, W) -> (N, H-win+1, W-win+1)."""
    s = jax.lax.reduce_window(v, 0.0, jax.lax.add, (1, win, win), (1, 1, 1), "VALID")
    return s / (win * win)


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean structural similarity of (N, H, W) maps, per image -> (N,)."""
    def unit(v):
        m = jnp.abs(v).max((1, 2), keepdims=True)
        return v / jnp.where(m == 0, 1.0, m)
    a, b = unit(a), unit(b)
    both = jnp.concatenate([a, b], axis=1)
    rng = both.max((1, 2)) - both.min((1, 2))
    rng = jnp.where(rng == 0, 1.0, rng)[:, None, None]
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    w = SSIM_WINDOW
    mu_a, mu_b = _box_mean(a, w), _box_mean(b, w)
    cov = (w * w) / (w * w - 1)  # sample covariance, skimage's default
    va = cov * (_box_mean(a * a, w) - mu_a ** 2)
    vb = cov * (_box_mean(b * b, w) - mu_b ** 2)
    vab = cov * (_box_mean(a * b, w) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * vab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return s.mean((1, 2))


def similarity(a: jax.Array, b: jax.Array, kind: str) -> jax.Array:
    """Per-image similarity of (N, H, W, Ca) maps -> (N,)."""
    if kind == "ssim":
        return ssim(a.sum(-1), b.sum(-1))
    flat_a, flat_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return (common.spearman if kind == "spearman" else common.pearson)(flat_a, flat_b)


def _check_similarity(kind: str, x) -> str:
    common.check_choice(kind, SIMILARITIES, "similarity")
    if kind == "ssim" and min(x.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"similarity='ssim' needs images of at least {SSIM_WINDOW}x"
                         f"{SSIM_WINDOW} pixels; got {x.shape[1:3]}")
    return kind


@functools.partial(compile_lib.jit, kind="backward", static_argnames=(
    "fn", "run", "kind", "use_abs", "display", "chunk_size"))
def _compare_core(fn, params, x, t, a, keys, arrays, *, run, kind, use_abs, display,
                  chunk_size):
    """Similarity (N,) of `a` with the method's maps for (x, t) under `params`."""
    m = rerun.maps(run, fn, params, x, t, keys, arrays, display=display,
                   chunk_size=x.shape[0] if chunk_size is None else chunk_size)
    if m.shape[1:] != a.shape[1:]:
        raise ValueError(f"attributions {a.shape} are not what the method returns on the "
                         f"images ({m.shape[1:]} per image); pass its own maps")
    if use_abs:
        a, m = jnp.abs(a), jnp.abs(m)
    # A NaN/inf map has no similarity: NaN, never a number the ranks or sums make of it.
    finite = jnp.isfinite(m.reshape(m.shape[0], -1)).all(-1)
    return jnp.where(finite, similarity(a, jnp.where(jnp.isfinite(m), m, 0.0), kind), jnp.nan)


def _setup(fn, params, images, target, attributions, method, method_options, key, kind,
           keyed: bool):
    x, t, a = common.prepare(fn, params, images, target, attributions)
    run, arrays = rerun.resolve(method, method_options)
    _check_similarity(kind, x)
    keys = common.metric_keys(key, x.shape[0], keyed or run.keyed,
                              "the class or the method's noise is drawn at random")
    mk = rerun.method_keys(keys, 1, salt=8)[:, 0] if run.keyed else None
    return x, t, a, run, arrays, keys, mk


def random_logit(fn, params, images, target, attributions, *, method, key,
                 method_options=None, similarity: str = "ssim", display: bool = True,
                 chunk_size=None) -> MetricResult:
    """Random-logit similarity (lower is better), (N,). method: a registered name or a
    callable; chunk_size: attribution passes at once."""
    x, t, a, run, arrays, keys, mk = _setup(fn, params, images, target, attributions, method,
                                            method_options, key, similarity, True)
    k = analysis.num_classes(fn, params, x.shape)
    if k < 2:
        raise ValueError(f"random_logit needs at least 2 classes; the model has {k}")
    off = _other_classes(keys, t, k)
    score = _compare_core(analysis.static_fn(fn), params, x, off, a, mk, arrays, run=run,
                          kind=similarity, use_abs=False, display=bool(display),
                          chunk_size=analysis.check_chunk_size(chunk_size))
    return MetricResult(score, None)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("k",))
def _other_classes(keys, t, k):
    draw = jax.vmap(lambda kk: jax.random.randint(jax.random.fold_in(kk, 9), (), 0, k - 1))(keys)
    return (t + 1 + draw) % k


def model_parameter_randomisation(fn, params, images, target, attributions, *, method,
                                  key=None, method_options=None, layers=None, model_seed=0,
                                  similarity: str = "spearman", abs: bool = False,
                                  display: bool = True, chunk_size=None) -> MetricResult:
    """Cascading model-parameter randomisation (lower is better): mean similarity over the
    cascade, (N,); curve (N, L). layers: the layers to randomise, top first (default
    `sanity.cascade_layers`: every layer holding parameters, from the output down, each
    once; a step that would randomise nothing new is refused). model_seed: the randomised
    weights (the same for every image); key: only for a keyed method's noise, fixed along
    the cascade. One compiled program serves every step."""
    if not isinstance(fn, probe_lib.Probe):
        raise ValueError("model_parameter_randomisation needs a Probe (it randomises named "
                         "layers): fn = jaxviz.core.probe.from_model(model)")
    x, t, a, run, arrays, keys, mk = _setup(fn, params, images, target, attributions, method,
                                            method_options, key, similarity, False)
    layers = sanity.check_cascade(fn, params, x.shape, layers)
    model_key = jax.random.key(checks.positive_int(model_seed, "model_seed", 0))
    static, chunk = analysis.static_fn(fn), analysis.check_chunk_size(chunk_size)
    curve = [_compare_core(static, sanity.randomize_layers(params, layers[:i + 1], model_key),
                           x, t, a, mk, arrays, run=run, kind=similarity, use_abs=bool(abs),
                           display=bool(display), chunk_size=chunk)
             for i in range(len(layers))]
    curve = jnp.stack(curve, axis=1)
    _warn_nan(curve, layers, method)
    return MetricResult(curve.mean(-1), curve)


def _warn_nan(curve, layers, method) -> None:
    """A RuntimeWarning naming the steps and images whose maps had NaN/inf. curve: (N, L)."""
    if checks.is_traced(curve):
        return
    bad = np.isnan(np.asarray(curve))
    if bad.any():
        name = method if isinstance(method, str) else getattr(method, "__name__", "the method")
        warnings.warn(f"model_parameter_randomisation: {name}'s maps have NaN/inf for images "
                      f"{np.flatnonzero(bad.any(1)).tolist()} once the model is randomised "
                      f"down to {[layers[j] for j in np.flatnonzero(bad.any(0))]}; those "
                      f"similarities are NaN", RuntimeWarning, stacklevel=3)



for _m in (
    Metric("model_parameter_randomisation", model_parameter_randomisation, "lower",
           "randomisation", needs_method=True,
           paper="Adebayo et al. 2018, Sanity checks for saliency maps"),
    Metric("random_logit", random_logit, "lower", "randomisation", needs_key=True,
           needs_method=True,
           paper="Sixt et al. 2020, When explanations lie: why many modified BP attributions "
                 "fail"),
):
    register(_m)
