"""Noise tunnel: SmoothGrad, SmoothGrad² and VarGrad around ANY attribution method.

    smooth_ig = noise_tunnel(integrated_gradients)
    res = smooth_ig(probe, probe.params, x, y, key=key, n_samples=20, sigma=0.15, n_steps=16)
    res.map   # the wrapped method's map shape; no extras

The wrapped method runs on `n_samples` noisy copies of the batch (Smilkov et al. 2017; the
same aggregation as Captum's NoiseTunnel): "smoothgrad" averages the maps, "smoothgrad_sq"
averages their squares, "vargrad" takes their variance. Noise for image i comes from image
i's own key, so results do not depend on which other images share the batch.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks
from jaxviz.core import method as method_lib
from jaxviz.core.result import Attribution, attribution_method

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma must be a number >= 0 (noise std as a fraction of each "
                         f"image's value range, e.g. 0.15); got {sigma!r}")
    return float(sigma)


def _tunnel(fn, params, x, t, keys, sigma, inner_arrays, *, inner, inner_static, keyed,
            classes_only, nt_type, n_samples, chunk_size):
    span = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))
    noise = jax.vmap(lambda k: jax.random.normal(k, (n_samples,) + x.shape[1:]))(keys)
    noise = jnp.swapaxes(noise, 0, 1) * (sigma * span)[None, :, None, None, None]
    subkeys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 1), n_samples))(keys)
    subkeys = jnp.swapaxes(subkeys, 0, 1)  # (n_samples, N) keys for a keyed inner method
    target = t.classes if classes_only else t

    def one(args):
        e, k = args
        opts = {**dict(inner_static), **inner_arrays, **({"key": k} if keyed else {})}
        return inner(fn, params, x + e, target, **opts).map

    maps = analysis.chunked(one, (noise, subkeys), chunk_size)
    if nt_type == "smoothgrad":
        return Attribution(maps.mean(0))
    if nt_type == "smoothgrad_sq":
        return Attribution((maps ** 2).mean(0))
    return Attribution(maps.var(0))


def noise_tunnel(method, *, keyed: bool = False, name: str | None = None):
    """Wrap `method(fn, params, images, target, **options) -> Attribution` (any attribution
    method; keyed=True if it takes key= itself) as a noise-tunnelled method with the same
    options plus key, n_samples, sigma, nt_type and chunk_size. It returns an Attribution
    whose map has the method's map shape (the inner method's extras are not aggregated).
    It takes the targets the method takes (class indices only for a method that does not
    declare its targets, `jaxviz.core.method.Support`).
    name: the name its warnings use (default "noise_tunnel(<method>)")."""
    inner_name = getattr(method, "method_name", getattr(method, "__name__", "method"))
    name = name or f"noise_tunnel({inner_name})"
    support = getattr(method, "target_support", None)
    plain = support is None
    if plain:
        support = method_lib.classes_only(f"{inner_name} takes class indices only")
    support = dataclasses.replace(support, layer=None)  # layer= goes to the inner method

    @attribution_method(name, getattr(method, "blank_cause", None), targets=support)
    @functools.wraps(method)
    def tunnelled(fn, params, images, target, *, key, n_samples: int = 50,
                  sigma: float = 0.15, nt_type: str = "smoothgrad",
                  chunk_size: int | None = None, **options):
        """key: one PRNG key, or one per image. sigma: noise std as a fraction of each
        image's (max - min) range (the paper: 0.1-0.2). chunk_size: noisy copies run at once."""
        n_samples = checks.positive_int(n_samples, "n_samples")
        sigma = _check_sigma(sigma)
        if nt_type not in NT_TYPES:
            raise ValueError(f"nt_type must be one of {NT_TYPES}; got {nt_type!r}")
        chunk_size = analysis.check_chunk_size(chunk_size)
        x = images
        keys = analysis.image_keys(key, x.shape[0])
        chunk_size = analysis.default_chunk(chunk_size, fn, params, x.shape, n_samples,
                                            target.count)
        arrays = {k: v for k, v in options.items() if isinstance(v, (jax.Array, np.ndarray))}
        static = tuple(sorted((k, v) for k, v in options.items() if k not in arrays))
        return method_lib.run(_tunnel, fn, params, x, target, keys=keys,
                              sigma=jnp.float32(sigma), inner_arrays=arrays, inner=method, inner_static=static, keyed=keyed,
                              classes_only=plain, nt_type=nt_type, n_samples=n_samples,
                              chunk_size=chunk_size)
    tunnelled.__name__ = name
    return tunnelled
