"""GradientSHAP (Lundberg & Lee 2017), as Captum's GradientShap defines it: expected
gradients with input noise and random baseline points.

For each image and each of n_samples draws: noise e ~ N(0, stdevs^2) per pixel, a baseline
b picked uniformly from `baselines` (a set of M images), alpha ~ U(0, 1); then

    attr = mean over draws of (x + e - b) * grad f(b + alpha (x + e - b))
    delta = mean over draws of sum(attr_draw) - (f(x + e) - f(b))

so sum(attr) -> f(x) - E_b f(b) in expectation for a linear f (and E over the noise).
Draws are vmapped, `chunk_size` of them at a time (each a gradient of the whole batch);
image i's draws come from its own key.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.attribution.perturbation import chunked_sum, image_draws
from jaxviz.core import analysis, checks
from jaxviz.core import method as method_lib
from jaxviz.core.result import Attribution, attribution_method


def baseline_set(baselines, x) -> jax.Array:
    """None (one zero image), a number, (H, W, C) or (M, H, W, C) -> (M, H, W, C)."""
    if baselines is None:
        return jnp.zeros((1,) + x.shape[1:], x.dtype)
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return jnp.full((1,) + x.shape[1:], baselines, x.dtype)
    b = jnp.asarray(baselines, jnp.float32)
    if b.shape == x.shape[1:]:
        b = b[None]
    if b.ndim != 4 or b.shape[1:] != x.shape[1:] or b.shape[0] < 1:
        raise ValueError(f"baselines must be None, a number, one image (H, W, C) = "
                         f"{tuple(x.shape[1:])} or a set of them (M, H, W, C); got shape "
                         f"{tuple(b.shape)}")
    checks.warn_outside_range(b, x, "baselines")
    return b


def _gradient_shap(fn, params, x, t, bases, keys, stdevs, *, n_samples, chunk_size, noisy):
    # Per image: the baseline picks and path points up front (one flat draw), the noise per
    # draw (a key folded with the draw's index); image i's numbers come from its key alone.
    u = image_draws(keys, 2 * n_samples).reshape(x.shape[0], n_samples, 2)
    picks = jnp.minimum((u[..., 0] * bases.shape[0]).astype(jnp.int32), bases.shape[0] - 1)
    size = int(np.prod(x.shape[1:]))

    def chunk(ids):  # draws ids (c,) of every image: attributions (c, N, H, W, C), f(x + e) (c, N)
        noise = jax.vmap(lambda s: jax.vmap(lambda k: jax.random.normal(
            jax.random.fold_in(k, s), (size,)))(keys))(ids)
        noisy_x = x + stdevs * noise.reshape((-1,) + x.shape)
        b = bases[picks[:, ids].T]
        point = b + u[:, ids, 1].T[..., None, None, None] * (noisy_x - b)
        # one backward pass of batch c * N, as in perturbation
        attr = (noisy_x - b) * method_lib.copy_grad(fn, params, point, t)
        if not noisy:  # f(x + e) = f(x) for every draw: computed once, below
            return attr, jnp.zeros(attr.shape[:2])
        return attr, method_lib.copy_scores(fn, params, noisy_x, t)

    attr, f_noisy = chunked_sum(chunk, n_samples, chunk_size)
    # delta's ends without a forward pass per draw for the baselines: f of each of the M
    # baselines once, gathered by the draws' picks (and f(x) once when there is no noise).
    f_base = method_lib.gathered_scores(fn, params, bases, picks.T, t).mean(0)
    f_x = f_noisy / n_samples if noisy else method_lib.scores(fn, params, x, t)
    attr = attr / n_samples
    return Attribution(attr, {"delta": attr.sum(axis=(1, 2, 3)) - (f_x - f_base)})


@attribution_method("gradient_shap", targets=method_lib.GRADIENT)
def gradient_shap(fn, params, images, target, *, key, baselines=None, n_samples: int = 5,
                  stdevs: float = 0.0, chunk_size: int | None = None) -> Attribution:
    """GradientSHAP. images: (N, H, W, C) -> Attribution: map (N, H, W, C), signed;
    extras["delta"] (N,): the mean over draws of sum(attr_draw) - (f(x + e) - f(b))
    (Captum returns the N * n_samples values). Its ends cost one forward pass of the M
    baselines and, with noise (stdevs > 0), one of each draw's noisy image.

    baselines: the reference distribution: None (a zero image), a number, one image
      (H, W, C) or M images (M, H, W, C), drawn uniformly per sample.
    n_samples: draws per image (Captum's default 5); stdevs: the input noise's standard
      deviation in pixel units (Captum's default 0); key: one PRNG key or one per image;
      chunk_size: draws evaluated at once (None: all that fit, core.analysis.default_chunk).
    """
    n_samples = checks.positive_int(n_samples, "n_samples")
    if isinstance(stdevs, bool) or not isinstance(stdevs, (int, float)) or stdevs < 0:
        raise ValueError(f"stdevs must be a number >= 0 (noise std in pixel units); "
                         f"got {stdevs!r}")
    chunk_size = analysis.check_chunk_size(chunk_size)
    x = images
    keys = analysis.image_keys(key, x.shape[0])
    chunk_size = analysis.default_chunk(chunk_size, fn, params, x.shape, n_samples,
                                        target.count)
    return method_lib.run(_gradient_shap, fn, params, x, target, bases=baseline_set(baselines, x),
                          keys=keys, stdevs=jnp.float32(stdevs), n_samples=n_samples,
                          chunk_size=chunk_size, noisy=bool(stdevs > 0))
