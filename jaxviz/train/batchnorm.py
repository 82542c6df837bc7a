"""BatchNorm running statistics recomputed from data, and a check that they are not stale.

Flax's BatchNorm keeps exponential moving averages of the batch statistics (momentum 0.99
by default), so after a short run they trail the weights by hundreds of steps and the
model in inference mode is not the model that was trained. `recalibrate_batchnorm` does
what `torch.optim.swa_utils.update_bn` does: one pass over the data in training mode with
fixed weights, and each layer's running mean and variance set to the average of its batch
means and (biased) batch variances over that pass, weighted by batch size:

    model = train.recalibrate_batchnorm(model, x_train)                     # NNX
    variables = train.recalibrate_batchnorm(module, x_train, variables=v)   # Linen

How: every `nnx.BatchNorm` / `linen.BatchNorm` runs with momentum 0 during the pass, so
its running statistics after a batch are exactly that batch's statistics; the average is
taken here. Nothing else of the model changes (its parameters, its RNG counters), the
batches are a seeded permutation of x (an image folder is sorted by class, and batches of
one class would give wrong variances), and the dropout key is fixed: the same inputs give
the same statistics, bitwise. A BatchNorm-like layer of another class is not recalibrated.

`check_batchnorm_statistics` compares a model's inference-mode accuracy on some data with
its accuracy when each batch is normalised by its own statistics, and warns, naming the
fix, when the first falls far below the second.
"""
from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

from jaxviz.core import compile as compile_lib
from jaxviz.core import modes
from jaxviz.train import step

STALE_TOLERANCE = 0.1  # accuracy points below batch-statistics accuracy that count as stale


def _linen_zero_momentum(next_fun, args, kwargs, context):
    """Linen interceptor: a BatchNorm called with momentum 0 stores the batch's own
    statistics. Only the bound copy living inside this apply is changed."""
    module = context.module
    if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
        object.__setattr__(module, "momentum", 0.0)  # a bound clone: the user's is untouched
    return next_fun(*args, **kwargs)


def _zero_momentum_graphdef(graphdef, params, rest):
    """The graphdef of the same model with every nnx.BatchNorm at momentum 0."""
    model = nnx.merge(graphdef, params, rest, copy=True)
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.BatchNorm):
            module.momentum = 0.0
    return nnx.split(model, nnx.Param, ...)[0]


def _nnx_batch_stats(graphdef, params, rest, x, key):
    """One batch in training mode -> {path: statistic} of that batch (pure dict)."""
    model = nnx.merge(graphdef, params, rest, copy=True)
    # A Linen model wrapped by nnx.bridge.ToNNX keeps linen.BatchNorms inside, which the
    # zero-momentum graphdef cannot reach: the interceptor sets theirs.
    with nn.intercept_methods(_linen_zero_momentum):
        step.call(model, x, True, key)
    return nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def _linen_batch_stats(module, flags, variables, x, key):
    """One batch of a Linen module in training mode -> its new `batch_stats` collection."""
    mutable = sorted(set(variables) - {"params"})
    with nn.intercept_methods(_linen_zero_momentum):
        _, updates = module.apply(variables, x, mutable=mutable, rngs={"dropout": key},
                                  **dict(flags))
    return updates["batch_stats"]


_jitted_nnx_batch_stats = compile_lib.jit(_nnx_batch_stats, kind="forward", static_argnums=(0,))
_jitted_linen_batch_stats = compile_lib.jit(_linen_batch_stats, kind="forward",
                                            static_argnums=(0, 1))


def batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Index arrays of a seeded permutation of range(n), batch_size at a time (the last
    one shorter), so every image is used once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = np.random.default_rng(seed).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def average_batch_stats(batch_stats, x, batch_size: int = 128, seed: int = 0):
    """The batch-size-weighted average of batch_stats(x_batch, key) over a seeded pass
    through x: (N, H, W, C) -> a pytree like batch_stats' result."""
    x = np.asarray(x)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"x must be (N, H, W, C) images with N >= 1; got shape {x.shape}")
    key = jax.random.key(seed)
    total, n = None, 0
    for i, idx in enumerate(batches(len(x), batch_size, seed)):
        stats = jax.device_get(batch_stats(jnp.asarray(x[idx]), jax.random.fold_in(key, i)))
        weighted = jax.tree.map(lambda a: np.asarray(a, np.float64) * len(idx), stats)
        total = weighted if total is None else jax.tree.map(np.add, total, weighted)
        n += len(idx)
    return jax.tree.map(lambda t, a: (t / n).astype(np.asarray(a).dtype), total, stats)


def has_batchnorm(model) -> bool:
    """True when an NNX model (or a wrapped Linen one) holds BatchNorm statistics."""
    return bool(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))


def recalibrated_rest(graphdef, params, rest, x, batch_size: int = 128, seed: int = 0):
    """`rest` (a split model's non-parameter state) with every BatchStat replaced by its
    average over one pass through x; everything else in it unchanged."""
    zero = _zero_momentum_graphdef(graphdef, params, rest)
    mean = average_batch_stats(
        lambda xb, k: _jitted_nnx_batch_stats(zero, params, rest, xb, k), x, batch_size, seed)
    model = nnx.merge(graphdef, params, rest, copy=True)
    stats = nnx.state(model, nnx.BatchStat)
    nnx.replace_by_pure_dict(stats, jax.tree.map(jnp.asarray, mean))
    nnx.update(model, stats)
    return nnx.split(model, nnx.Param, ...)[2]


def recalibrate_batchnorm(model, x, *, variables: Any = None, batch_size: int = 128,
                          seed: int = 0):
    """BatchNorm running statistics recomputed over x: (N, H, W, C) (the training images,
    unaugmented) as the average of the batch statistics of one pass (module docstring).

    NNX (an `nnx.BatchNorm` anywhere, or a Linen model wrapped by `nnx.bridge.ToNNX`):
    returns a new model, in the input's mode, with the new statistics; `model` itself is
    not changed. Linen: pass `variables` ({"params", "batch_stats", ...}); returns new
    variables with `batch_stats` replaced. A model without BatchNorm statistics comes back
    unchanged.
    """
    if isinstance(model, nn.Module):
        if variables is None or "batch_stats" not in variables:
            got = "None" if variables is None else sorted(variables)
            raise ValueError("recalibrate_batchnorm: a Linen module needs variables= with a "
                             f"'batch_stats' collection; got {got}")
        flags = tuple(sorted(modes.mode_kwargs(modes.call_target(model), True).items()))
        mean = average_batch_stats(
            lambda xb, k: _jitted_linen_batch_stats(model, flags, variables, xb, k),
            x, batch_size, seed)
        return {**variables, "batch_stats": jax.tree.map(jnp.asarray, mean)}
    if not isinstance(model, nnx.Module):
        raise TypeError(f"recalibrate_batchnorm: model must be an nnx.Module or a "
                        f"linen.Module; got {type(model).__name__}")
    if variables is not None:
        raise ValueError("recalibrate_batchnorm: variables= is for Linen modules; an NNX "
                         "model holds its own state")
    if not has_batchnorm(model):
        return model
    (graphdef, rest), params = step.split_model(model)
    return nnx.merge(graphdef, params, recalibrated_rest(graphdef, params, rest, x,
                                                         batch_size, seed))


def _batch_mode_logits(graphdef, params, rest, x, key):
    """Logits with each batch normalised by its own statistics (training mode)."""
    return step.call(nnx.merge(graphdef, params, rest, copy=True), x, True, key)


_jitted_batch_mode_logits = compile_lib.jit(_batch_mode_logits, kind="forward",
                                            static_argnums=(0,))


def batchnorm_accuracies(model, x, y, batch_size: int = 128, seed: int = 0) -> dict:
    """{"inference": accuracy with the running statistics, "batch_statistics": accuracy
    with every batch normalised by its own statistics} of an NNX model on x: (N, H, W, C),
    y: (N,) int, batches a seeded permutation of x."""
    (graphdef, rest), params = step.split_model(model)
    x, y = np.asarray(x), np.asarray(y)
    key, right = jax.random.key(seed), {"inference": 0, "batch_statistics": 0}
    for i, idx in enumerate(batches(len(x), batch_size, seed)):
        xb = jnp.asarray(x[idx])
        logits = {"inference": step.infer(graphdef, params, rest, xb),
                  "batch_statistics": _jitted_batch_mode_logits(
                      graphdef, params, rest, xb, jax.random.fold_in(key, i))}
        for name, out in logits.items():
            right[name] += int(np.sum(np.asarray(out).argmax(-1) == y[idx]))
    return {name: r / len(x) for name, r in right.items()}


def check_batchnorm_statistics(model, x, y, *, max_images: int = 512,
                               tolerance: float = STALE_TOLERANCE, seed: int = 0) -> dict | None:
    """Warn (UserWarning) when an NNX model's inference-mode accuracy on (x, y) is more
    than `tolerance` below its accuracy with batch statistics: its BatchNorm running
    statistics do not describe its weights. Uses the first max_images examples.

    Returns batchnorm_accuracies' dict, or None for a model without BatchNorm statistics
    (nothing is run then).
    """
    if not has_batchnorm(model):
        return None
    x, y = np.asarray(x)[:max_images], np.asarray(y)[:max_images]
    acc = batchnorm_accuracies(model, x, y, seed=seed)
    if acc["batch_statistics"] - acc["inference"] > tolerance:
        warnings.warn(
            f"BatchNorm statistics look stale: inference-mode accuracy {acc['inference']:.2f} "
            f"on these {len(x)} images, {acc['batch_statistics']:.2f} with each batch's own "
            f"statistics, so maps and metrics would explain statistics the model never used; "
            f"recompute them over the training images with "
            f"jaxviz.train.recalibrate_batchnorm(model, x_train)", UserWarning, stacklevel=2)
    return acc
