"""Robustness: does the map stay put when the input barely moves? The attribution method
itself is re-run on every perturbed copy, inside the metric's compiled vmap (`rerun`).

    max_sensitivity / avg_sensitivity   Yeh et al. 2019, Captum's `sensitivity_max`:
        ||a(x + d) - a(x)||_F / ||a(x)||_F (a zero norm counts as 1), d ~ U[-radius, radius]
        per value, max (Captum) or mean (Quantus' AvgSensitivity) over n_samples.
    local_lipschitz_estimate            Alvarez-Melis & Jaakkola 2018, Quantus' definition:
        max over n_samples of ||a(x') - a(x)||_2 / (||x' - x||_2 + 1e-10), x' = x + N(0,
        sigma^2) per value.
`attributions` are what `method` returns on the images (`display=True`: its per-pixel
display map, what `evaluate` passes); a keyed method draws fresh noise per copy.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common, rerun
from jaxviz.evaluate.registry import Metric, MetricResult, register

NOISES = ("uniform", "gaussian")


@functools.partial(compile_lib.jit, kind="backward", static_argnames=(
    "fn", "run", "n_samples", "noise", "scale", "ratio", "reduce", "display", "chunk_size"))
def _robust_core(fn, params, x, t, a, keys, arrays, *, run, n_samples, noise, scale, ratio,
                 reduce, display, chunk_size):
    """(scores (N,), ratios (N, n_samples)): map change over map norm (ratio "map") or over
    input change ("input"), reduced by "max" or "mean"."""
    n = x.shape[0]
    rk = common.row_keys(keys, n_samples, salt=5)
    if noise == "uniform":
        d = jax.vmap(jax.vmap(lambda k: jax.random.uniform(
            k, x.shape[1:], minval=-scale, maxval=scale)))(rk)
    else:
        d = jax.vmap(jax.vmap(lambda k: scale * jax.random.normal(k, x.shape[1:])))(rk)
    xs = (x[:, None] + d).reshape((-1,) + x.shape[1:])
    ts = jnp.repeat(t, n_samples)
    mk = rerun.method_keys(keys, n_samples, salt=6).reshape(-1) if run.keyed else None
    maps = rerun.maps(run, fn, params, xs, ts, mk, arrays, display=display,
                      chunk_size=n_samples if chunk_size is None else chunk_size)
    if maps.shape[1:] != a.shape[1:]:
        raise ValueError(f"attributions {a.shape} are not what the method returns on the "
                         f"images ({maps.shape[1:]} per image); pass its own maps")
    diff = maps.reshape((n, n_samples, -1)) - a.reshape(n, 1, -1)
    num = jnp.sqrt((diff * diff).sum(-1))
    if ratio == "map":
        den = jnp.sqrt((a * a).sum((1, 2, 3)))[:, None]
        r = num / jnp.where(den == 0, 1.0, den)
    else:
        r = num / (jnp.sqrt((d * d).sum((2, 3, 4))) + 1e-10)
    return (r.max(-1) if reduce == "max" else r.mean(-1)), r


def _robust(fn, params, images, target, attributions, *, method, method_options, key,
            n_samples, noise, scale, ratio, reduce, display, chunk_size) -> MetricResult:
    x, t, a = common.prepare(fn, params, images, target, attributions)
    run, arrays = rerun.resolve(method, method_options)
    keys = common.metric_keys(key, x.shape[0], True, "inputs are perturbed at random")
    return MetricResult(*_robust_core(
        analysis.static_fn(fn), params, x, t, a, keys, arrays, run=run,
        n_samples=checks.positive_int(n_samples, "n_samples"), noise=noise,
        scale=common.check_number(scale, "radius" if noise == "uniform" else "sigma",
                                  strict=True),
        ratio=ratio, reduce=reduce, display=bool(display),
        chunk_size=analysis.check_chunk_size(chunk_size)))


def max_sensitivity(fn, params, images, target, attributions, *, method, key,
                    method_options=None, n_samples: int = 10, radius: float = 0.02,
                    display: bool = True, chunk_size=None) -> MetricResult:
    """Max-sensitivity (lower is better), (N,); curve (N, n_samples): every sample's ratio.
    method: a registered name or a callable; chunk_size: attribution passes at once
    (default one image's n_samples)."""
    return _robust(fn, params, images, target, attributions, method=method,
                   method_options=method_options, key=key, n_samples=n_samples, noise="uniform",
                   scale=radius, ratio="map", reduce="max", display=display,
                   chunk_size=chunk_size)


def avg_sensitivity(fn, params, images, target, attributions, *, method, key,
                    method_options=None, n_samples: int = 10, radius: float = 0.02,
                    display: bool = True, chunk_size=None) -> MetricResult:
    """Average sensitivity (lower is better): max_sensitivity's ratios, averaged."""
    return _robust(fn, params, images, target, attributions, method=method,
                   method_options=method_options, key=key, n_samples=n_samples, noise="uniform",
                   scale=radius, ratio="map", reduce="mean", display=display,
                   chunk_size=chunk_size)


def local_lipschitz_estimate(fn, params, images, target, attributions, *, method, key,
                             method_options=None, n_samples: int = 10, sigma: float = 0.1,
                             display: bool = True, chunk_size=None) -> MetricResult:
    """Local Lipschitz estimate (lower is better), (N,); curve (N, n_samples)."""
    return _robust(fn, params, images, target, attributions, method=method,
                   method_options=method_options, key=key, n_samples=n_samples, noise="gaussian",
                   scale=sigma, ratio="input", reduce="max", display=display,
                   chunk_size=chunk_size)


_YEH = "Yeh et al. 2019, On the (in)fidelity and sensitivity of explanations"
_QUICK = dict(n_samples=2)
for _m in (
    Metric("max_sensitivity", max_sensitivity, "lower", "robustness", needs_key=True,
           needs_method=True, quick=_QUICK, paper=_YEH),
    Metric("avg_sensitivity", avg_sensitivity, "lower", "robustness", needs_key=True,
           needs_method=True, quick=_QUICK, paper=_YEH),
    Metric("local_lipschitz_estimate", local_lipschitz_estimate, "lower", "robustness",
           needs_key=True, needs_method=True, quick=_QUICK,
           paper="Alvarez-Melis & Jaakkola 2018, On the robustness of interpretability methods"),
):
    register(_m)
