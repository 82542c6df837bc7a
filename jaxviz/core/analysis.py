"""What every analysis shares: checked inputs, the one target score, the input gradient,
chunked evaluation and per-image PRNG keys.

The chunk knob has one name everywhere: `chunk_size`, how many forward (or forward +
backward) passes run at once. None evaluates all of them in one vmapped call; a number
bounds memory at that many, through `jax.lax.map(..., batch_size=chunk_size)`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxviz.core import checks
from jaxviz.core import probe as probe_lib

SCORES = ("logit", "prob", "log_prob")


def num_classes(fn, params, x_shape) -> int:
    """K of fn's (N, K) logits for inputs shaped x_shape (by tracing, no compute)."""
    if isinstance(fn, probe_lib.Probe):
        shape = fn.output_shape(x_shape)
    else:
        shape = jax.eval_shape(fn, params, jax.ShapeDtypeStruct(x_shape, jnp.float32)).shape
    if len(shape) != 2 or shape[0] != x_shape[0]:
        raise ValueError(f"fn must return (N, K) logits for images of shape {x_shape}; "
                         f"got output shape {tuple(shape)}")
    return int(shape[1])


def check_inputs(fn, params, images, target, name: str = "images"):
    """Validated (N, H, W, C) float32 images and (N,) int32 targets, range-checked."""
    if not callable(fn):
        raise ValueError(f"fn must be a callable fn(params, x) -> logits or a Probe; got "
                         f"{type(fn).__name__}")
    x = checks.as_images(images, name)
    return x, checks.as_targets(target, x.shape[0], num_classes(fn, params, x.shape))


def target_score(logits: jax.Array, target: jax.Array, score: str = "logit") -> jax.Array:
    """The score each analysis explains. logits: (..., K), target: (...) int -> (...).

    score: "logit" (the default everywhere), "prob" (softmax) or "log_prob"."""
    if score == "prob":
        logits = jax.nn.softmax(logits, axis=-1)
    elif score == "log_prob":
        logits = jax.nn.log_softmax(logits, axis=-1)
    elif score != "logit":
        raise ValueError(f"score must be one of {SCORES}; got {score!r}")
    return jnp.take_along_axis(logits, target[..., None], axis=-1)[..., 0]


def input_grad(model, params, x: jax.Array, t: jax.Array) -> jax.Array:
    """d score[i] / d x[i] for every image at once. x: (N, H, W, C) -> (N, H, W, C).

    `model` is called as given: wrap it with `compile.fast_model` (the compile policy) or a
    rule rewrite before passing it in. Images must not interact inside `model`."""
    def total(x):
        return target_score(model(params, x), t).sum()
    return jax.grad(total)(x)


def chunked(f, xs, chunk_size: int | None):
    """vmap f over xs' leading axis, chunk_size rows at a time (None: all at once)."""
    if chunk_size is None or chunk_size >= jax.tree.leaves(xs)[0].shape[0]:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=chunk_size)


def check_chunk_size(chunk_size, name: str = "chunk_size") -> int | None:
    """None, or an int >= 1."""
    return None if chunk_size is None else checks.positive_int(chunk_size, name)


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


def static_fn(fn):
    """The form of fn passed to a jitted core as a static argument: for a Probe, a view
    without arrays (so a compiled cache never keeps weights alive); otherwise fn."""
    view = getattr(probe_lib, "static_view", None)
    return view(fn) if view is not None else fn
