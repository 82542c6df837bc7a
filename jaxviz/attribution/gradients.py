"""Gradient maps: saliency, gradient x input, guided backprop, deconvnet, the SmoothGrad family.

Every method: `method(fn, params, images, target, **options) -> (N, H, W, C) float32`, where
`fn(params, x) -> (N, K) logits` is any apply_fn or a `jaxviz.core.probe.Probe`, `images` is
(N, H, W, C) and `target` an int or one class index per image. The gradient of image i is
taken of `logits[i, target[i]]`, so images must not interact inside `fn` (true for any model
in inference mode, which a Probe guarantees).

Options are checked in Python before tracing; each method is one module-level `jax.jit`
with `fn` and the options static, so a second call with the same shapes does not retrace.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.core import checks, compile as compile_lib
from jaxviz.attribution.relu_rules import with_relu_rule
from jaxviz.core.probe import Probe

# What SmoothGrad averages: the per-image map of each noisy copy.
BASE_METHODS = ("gradient", "saliency", "gradient_x_input", "guided_backprop", "deconvnet")
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def num_classes(fn, params, x_shape) -> int:
    """K of fn's (N, K) logits for inputs shaped x_shape (by tracing, no compute)."""
    if isinstance(fn, Probe):
        shape = fn.output_shape(x_shape)
    else:
        shape = jax.eval_shape(fn, params, jax.ShapeDtypeStruct(x_shape, jnp.float32)).shape
    if len(shape) != 2 or shape[0] != x_shape[0]:
        raise ValueError(f"fn must return (N, K) logits for images of shape {x_shape}; "
                         f"got output shape {tuple(shape)}")
    return int(shape[1])


def prepare(fn, params, images, target, name: str = "images"):
    """Validated (N, H, W, C) float32 images and (N,) int32 targets, range-checked."""
    if not callable(fn):
        raise ValueError(f"fn must be a callable fn(params, x) -> logits or a Probe; got "
                         f"{type(fn).__name__}")
    x = checks.as_images(images, name)
    return x, checks.as_targets(target, x.shape[0], num_classes(fn, params, x.shape))


def input_grad(fn, params, x, t):
    """d logits[i, t[i]] / d x[i] for every image at once. x: (N, H, W, C) -> (N, H, W, C).

    The model runs through `fastgrad.fast`: the same gradients with backward rules that XLA
    CPU runs 2-3x faster (JAXVIZ_FASTGRAD=0 turns it off)."""
    fast_fn = compile_lib.fast_model(fn)

    def score(x):
        logits = fast_fn(params, x)
        return jnp.take_along_axis(logits, t[:, None], axis=1).sum()
    return jax.grad(score)(x)


def base_map(method: str, fn, params, x, t):
    """One of BASE_METHODS on a batch, traced inline (no jit of its own)."""
    if method in ("guided_backprop", "deconvnet"):
        return input_grad(with_relu_rule(fn, "guided" if method == "guided_backprop"
                                         else "deconvnet"), params, x, t)
    g = input_grad(fn, params, x, t)
    return {"gradient": g, "saliency": jnp.abs(g), "gradient_x_input": g * x}[method]


@functools.partial(compile_lib.jit, static_argnames=("fn", "method"))
def _map(fn, params, x, t, method):
    return base_map(method, fn, params, x, t)


def saliency(fn, params, images, target, *, abs: bool = True) -> jax.Array:
    """|d score / d x| (Simonyan et al. 2014). (N, H, W, C) -> (N, H, W, C).

    abs=False gives the signed gradient. keras-vis also takes the max over channels:
    `normalize.reduce_channels(s, "max")`.
    """
    x, t = prepare(fn, params, images, target)
    return _map(fn, params, x, t, "saliency" if abs else "gradient")


def gradient_x_input(fn, params, images, target) -> jax.Array:
    """x * d score / d x (Shrikumar et al. 2016). (N, H, W, C) -> (N, H, W, C)."""
    x, t = prepare(fn, params, images, target)
    return _map(fn, params, x, t, "gradient_x_input")


def guided_backprop(fn, params, images, target) -> jax.Array:
    """Input gradient through guided ReLUs (see `relu_rules`). (N, H, W, C) -> same, signed.

    `jnp.abs` of it is keras-vis' `visualize_saliency(..., backprop_modifier='guided')`.
    """
    x, t = prepare(fn, params, images, target)
    return _map(fn, params, x, t, "guided_backprop")


def deconvnet(fn, params, images, target) -> jax.Array:
    """Input gradient through deconvnet ReLUs (see `relu_rules`). (N, H, W, C) -> same, signed."""
    x, t = prepare(fn, params, images, target)
    return _map(fn, params, x, t, "deconvnet")


def chunked(f, xs, batch_size: int | None):
    """vmap f over xs' leading axis, batch_size rows at a time (None: all at once)."""
    if batch_size is None or batch_size >= jax.tree.leaves(xs)[0].shape[0]:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=batch_size)


def image_keys(key, n: int, name: str = "key") -> jax.Array:
    """One PRNG key, split into n, or n keys given (one per image) -> (n,) keys."""
    if key is None:
        raise ValueError(f"{name} is required: a jax.random.key(seed), or one key per image")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not typed and not (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
        raise ValueError(f"{name} must be a PRNG key (jax.random.key); got dtype {key.dtype}")
    kshape = key.shape if typed else key.shape[:-1]
    if kshape == ():
        return jax.random.split(key, n)
    if kshape == (n,):
        return key
    raise ValueError(f"{name} must be one key or one per image, shape ({n},); got key shape "
                     f"{kshape}")


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma must be a number >= 0 (noise std as a fraction of each "
                         f"image's value range, e.g. 0.15); got {sigma!r}")
    return float(sigma)


@functools.partial(compile_lib.jit, static_argnames=("fn", "method", "nt_type", "n_samples",
                                             "batch_size"))
def _noise_tunnel(fn, params, x, t, keys, sigma, method, nt_type, n_samples, batch_size):
    span = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))
    # Noise per image from the image's own key: results don't depend on batch composition.
    noise = jax.vmap(lambda k: jax.random.normal(k, (n_samples,) + x.shape[1:]))(keys)
    noise = jnp.swapaxes(noise, 0, 1) * (sigma * span)[None, :, None, None, None]
    maps = chunked(lambda e: base_map(method, fn, params, x + e, t), noise, batch_size)
    if nt_type == "smoothgrad":
        return maps.mean(0)
    if nt_type == "smoothgrad_sq":
        return (maps ** 2).mean(0)
    return maps.var(0)


def smoothgrad(fn, params, images, target, *, key, n_samples: int = 50, sigma: float = 0.15,
               nt_type: str = "smoothgrad", method: str = "saliency",
               batch_size: int | None = None) -> jax.Array:
    """Average `method`'s map over noisy copies (Smilkov et al. 2017). -> (N, H, W, C).

    sigma: noise std as a fraction of each image's (max - min) range (the paper: 0.1-0.2).
    nt_type: "smoothgrad" (mean), "smoothgrad_sq" (mean of squares), "vargrad" (variance).
    method: one of BASE_METHODS; "saliency" makes sigma=0 equal `saliency`.
    key: one PRNG key, or one per image ((N,) keys) so each image's noise is its own.
    batch_size: noisy copies evaluated at once (vmapped); None = all n_samples.
    """
    n_samples = checks.positive_int(n_samples, "n_samples")
    sigma = _check_sigma(sigma)
    if nt_type not in NT_TYPES:
        raise ValueError(f"nt_type must be one of {NT_TYPES}; got {nt_type!r}")
    if method not in BASE_METHODS:
        raise ValueError(f"method must be one of {BASE_METHODS}; got {method!r}")
    if batch_size is not None:
        batch_size = min(checks.positive_int(batch_size, "batch_size"), n_samples)
    x, t = prepare(fn, params, images, target)
    keys = image_keys(key, x.shape[0])
    return _noise_tunnel(fn, params, x, t, keys, jnp.float32(sigma), method, nt_type,
                         n_samples, batch_size)
