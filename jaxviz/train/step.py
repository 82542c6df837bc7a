"""The compiled steps: one optimizer step in training mode, one evaluation in inference mode.

A model is split into its trainable parameters and the rest of its state (BatchNorm
statistics, NNX RNG counters, a Linen model's `batch_stats` through `nnx.bridge.ToNNX`).
The train step returns the updated rest next to the updated parameters, so running
statistics move and a model holding its own dropout `Rngs` draws a new mask every step;
the checkpoint stores both.

The step's mode reaches the model two ways, so a user need not say which their model reads:
NNX attributes (`model.train()` / `model.eval()`) and every mode flag the model's
`__call__` takes (`train`, `training`, `deterministic`, `use_running_average`:
`jaxviz.core.modes`). A wrapped Linen model gets its non-parameter collections as mutable
ones in training mode, none in inference mode.
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax.nnx import variablelib

from jaxviz.core import compile as compile_lib
from jaxviz.core import modes


class Trainable(NamedTuple):
    """An NNX model split for pure training: its structure and non-parameter state."""

    graphdef: Any
    rest: Any  # non-trainable state (batch stats, rng counters) as split off the model


class TrainState(NamedTuple):
    """What one step changes: parameters, the rest of the model's state, optimizer state."""

    params: Any
    rest: Any
    opt_state: Any


def split_model(model: nnx.Module) -> tuple[Trainable, Any]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return Trainable(graphdef, rest), params


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _linen_collections(model) -> list[str]:
    """The Linen collections a wrapped model updates in training mode (all but params;
    RNG state is the wrapper's own, not a collection)."""
    state = nnx.state(model, nnx.Not(nnx.Any(nnx.Param, nnx.RngState, nnx.Intermediate)))
    kinds = {type(v) for v in jax.tree.leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable))}
    return sorted(variablelib.variable_name_from_type(k) for k in kinds)


def call(model: nnx.Module, x: jax.Array, training: bool, key: jax.Array | None = None):
    """model(x) in the given mode. In training mode the model's own state changes (read
    it back with nnx.split); `key` feeds dropout for models that take a key or `rngs`."""
    flags = modes.mode_kwargs(modes.call_target(model), training)
    if modes.is_linen_bridge(model):
        if not training:  # no mutable collections: a Linen update raises instead
            return model(x, rngs=nnx.Rngs(), **flags)
        rngs = nnx.Rngs() if key is None else nnx.Rngs(**dict(zip(("params", "dropout"),
                                                                 jax.random.split(key))))
        return model(x, rngs=rngs, mutable=_linen_collections(model) or False, **flags)
    model.train() if training else model.eval()
    fn = type(model).__call__
    if training and _accepts(fn, "dropout_key"):
        flags["dropout_key"] = key
    elif training and _accepts(fn, "rngs"):
        flags["rngs"] = nnx.Rngs(dropout=key)
    return model(x, **flags)


def train_forward(graphdef, params, rest, x: jax.Array, key: jax.Array):
    """Training mode: (logits (B, K), the updated rest). x: (B, H, W, C) float32."""
    # copy=True: fresh Variables in this trace, which the model may then update.
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits = call(model, x, True, key)
    return logits, nnx.split(model, nnx.Param, ...)[2]


def infer(graphdef, params, rest, x: jax.Array) -> jax.Array:
    """Inference mode logits (B, K); the state is read, never changed."""
    return call(nnx.merge(graphdef, params, rest, copy=True), x, False)


def random_shift(images: jax.Array, key: jax.Array, shift: int) -> jax.Array:
    """Translate each image by up to `shift` pixels (zero fill). images: (N, H, W, C)."""
    if shift == 0:
        return images
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * shift + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(padded, offsets)


def train_step(graphdef, optimizer, shift, params, rest, opt_state, x, y, key):
    """One Adam step on softmax cross-entropy. x: (B, H, W, C) float32, y: (B,) int32.

    Returns (params, rest, opt_state, loss, accuracy), rest as the model left it.
    """
    aug_key, drop_key = jax.random.split(key)
    x = random_shift(x, aug_key, shift)
    # Through the compile policy's fast model (same values and gradients).
    forward = compile_lib.fast_model(lambda p, r, x, k: train_forward(graphdef, p, r, x, k))

    def loss_fn(p):
        logits, new_rest = forward(p, rest, x, drop_key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (jnp.mean(jnp.argmax(logits, -1) == y), new_rest)

    (loss, (acc, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, loss, acc


def eval_step(graphdef, params, rest, x, y):
    """Summed loss and correct count over a batch, inference mode."""
    logits = infer(graphdef, params, rest, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, jnp.sum(jnp.argmax(logits, -1) == y)


# The compiled steps fit() runs, public for callers that drive their own loop (the benchmark).
jitted_train_step = compile_lib.jit(train_step, kind="backward", static_argnums=(0, 1, 2),
                                    donate_argnums=(3, 4, 5))
jitted_eval_step = compile_lib.jit(eval_step, kind="forward", static_argnums=(0,))


def evaluate(trainable: Trainable, params, x, y, chunk_size: int = 500) -> tuple[float, float]:
    """(mean loss, accuracy) over all of x: (N, H, W, C), y: (N,), chunk_size images at once."""
    loss, correct = 0.0, 0
    for i in range(0, len(x), chunk_size):
        l, c = jitted_eval_step(trainable.graphdef, params, trainable.rest,
                                jnp.asarray(x[i:i + chunk_size]), jnp.asarray(y[i:i + chunk_size]))
        loss, correct = loss + float(l), correct + int(c)
    return loss / len(x), correct / len(x)
