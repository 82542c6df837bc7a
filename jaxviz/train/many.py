"""Many models trained at once: one compiled program, `vmap`ped over models.

    stack = stack_models([make(seed) for seed in seeds])      # one architecture, M models
    trained = fit_many(stack, config, (x, y), seeds=seeds)    # every step of every model
    acc = evaluate_many(trained, (x_test, y_test))            # (M,) accuracies, on the host

Model m has its own seed (batch order, augmentation and dropout keys; its initial weights
are whatever `stack_models` was given) and its own view of the training data:
`view(data, variant_m, idx) -> (x (B, H, W, C), y (B,))`, e.g. ROAR's images with a
fraction of each image's pixels replaced, or labels permuted. Only the rows a step uses
are materialised, so M variants of the data cost no more memory than one.

The run is one XLA program, `lax.scan` over steps inside `vmap` over models, each step
`step.train_step` itself, so M small models compile once and run as batched kernels.
`fit_sequential` trains the same models one after another through the same program
(M = 1): the baseline for the speed-up, and equal numbers (tests). With a `mesh`, the
model axis is split across its devices (several processes included: `jax.distributed`),
and nothing is communicated during training.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxviz import sharding
from jaxviz.core import compile as compile_lib
from jaxviz.train.config import TrainConfig, make_optimizer
from jaxviz.train.step import infer, split_model, train_step

View = Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array]]


class Stack(NamedTuple):
    """M models of one architecture: every leaf of params and rest has a leading (M,) axis."""

    graphdef: Any
    params: Any
    rest: Any

    @property
    def size(self) -> int:
        return int(jax.tree.leaves(self.params)[0].shape[0])


class Trained(NamedTuple):
    """fit_many's result: the trained Stack and per-step training loss and accuracy (M, S)."""

    stack: Stack
    losses: np.ndarray
    accuracies: np.ndarray


def take(data, variant, idx: jax.Array):
    """The default view: rows idx of data = (x (N, H, W, C), y (N,)); variant unused."""
    del variant
    return data[0][idx], data[1][idx]


def stack_models(models: Sequence[nnx.Module]) -> Stack:
    """Split each model (`step.split_model`) and stack their states on a new leading axis."""
    if not models:
        raise ValueError("stack_models needs at least one model; got none")
    splits = [split_model(m) for m in models]
    graphdef = splits[0][0].graphdef
    shapes = [jax.tree.map(jnp.shape, (p, t.rest)) for t, p in splits]
    for i, (t, _) in enumerate(splits):
        if t.graphdef != graphdef or shapes[i] != shapes[0]:
            raise ValueError(f"models[{i}] has another architecture than models[0]; "
                             "stack_models needs one architecture")
    stack = lambda *leaves: jnp.stack(leaves)
    return Stack(graphdef, jax.tree.map(stack, *[p for _, p in splits]),
                 jax.tree.map(stack, *[t.rest for t, _ in splits]))


def _n_rows(data) -> int:
    return int(jax.tree.leaves(data)[0].shape[0])


def _train_one(graphdef, optimizer, config: TrainConfig, view: View, n: int, params, rest,
               data, variant, seed):
    """One model's whole run: config.epochs passes over a seeded order of the n rows."""
    b = config.batch_size
    steps = n // b
    order_key, step_key = jax.random.split(jax.random.key(seed))
    perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(order_key, e), n))(
        jnp.arange(config.epochs))
    batches = perms[:, :steps * b].reshape(config.epochs * steps, b)

    def body(carry, xs):
        s, idx = xs
        x, y = view(data, variant, idx)
        *carry, loss, acc = train_step(graphdef, optimizer, config.shift, *carry, x, y,
                                       jax.random.fold_in(step_key, s))
        return tuple(carry), (loss, acc)

    init = (params, rest, optimizer.init(params))
    (params, rest, _), (losses, accs) = jax.lax.scan(
        body, init, (jnp.arange(config.epochs * steps), batches))
    return params, rest, losses, accs


@functools.partial(compile_lib.jit, kind="backward", static_argnums=(0, 1, 2, 3, 4, 5))
def _train_program(graphdef, optimizer, config, view, n, at_once, params, rest, data, variants,
                   seeds):
    one = functools.partial(_train_one, graphdef, optimizer, config, view, n)
    if at_once is None:
        return jax.vmap(one, in_axes=(0, 0, None, 0, 0))(params, rest, data, variants, seeds)
    # vmapped at_once models at a time, a loop over those groups, in the same program
    return jax.lax.map(lambda a: one(a[0], a[1], data, a[2], a[3]),
                       (params, rest, variants, seeds), batch_size=at_once)


def _check(stack: Stack, config: TrainConfig, data, seeds, variants) -> None:
    config.validate()
    m, n = stack.size, _n_rows(data)
    if len(seeds) != m:
        raise ValueError(f"seeds must give one seed per model ({m}); got {len(seeds)}")
    for leaf in jax.tree.leaves(variants):
        if np.shape(leaf)[:1] != (m,):
            raise ValueError(f"variants must have a leading axis of one entry per model ({m}); "
                             f"got a leaf of shape {np.shape(leaf)}")
    if n < config.batch_size:
        raise ValueError(f"config.batch_size ({config.batch_size}) must be at most the number "
                         f"of training rows; got {n} rows")


def _padded(tree, m_to: int):
    """Every leaf (M, ...) padded to m_to rows with copies of its last row (dropped later)."""
    def one(a):
        a = jnp.asarray(a)
        extra = m_to - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, 0)])
    return jax.tree.map(one, tree)


def _on_mesh(mesh, m: int, per_model, shared):
    """(per-model trees padded to the mesh and split on their first axis, shared replicated)."""
    if mesh is None:
        return per_model, shared
    n_dev = mesh.devices.size
    per_model = _padded(per_model, -(-m // n_dev) * n_dev)
    axis = mesh.axis_names[0]
    return sharding.place(per_model, mesh, axis), sharding.place(shared, mesh, None)


def fit_many(stack: Stack, config: TrainConfig, data, *, seeds: Sequence[int],
             variants=None, view: View = take, mesh=None,
             models_at_once: int | None = None) -> Trained:
    """Train the M models of `stack` at once, each on its own view of `data`.

    Args:
      data: any pytree whose leaves have the same number of rows N (default view:
        (x (N, H, W, C) float32, y (N,) int32)); every model sees N // batch_size steps
        per epoch, in its own order.
      seeds: M ints: model m's batch order and step keys.
      variants: a pytree of (M, ...) arrays, model m's entry handed to `view`.
      view: `view(data, variant, idx (B,)) -> (x (B, H, W, C), y (B,))`, traced once; a
        module-level function, so the compiled program is reused.
      mesh: a `jax.sharding.Mesh`: models split over its first axis (padded to a multiple
        of its size), data replicated. Across processes every process passes the same
        arguments.
      models_at_once: None (default): all M models vmapped, one batched kernel per layer,
        what fills an accelerator. An int b: b at a time, a loop over the groups inside the
        same program (`lax.map`); on XLA CPU, where a vmapped convolution becomes a grouped
        one that runs slower per model, 1 is fastest (docs/roar.md). Same numbers either
        way; without a mesh only.
    Returns: Trained, whose stack has M models (on the mesh when given) and whose losses
      and accuracies are (M, epochs * steps) host arrays.
    """
    variants = jnp.zeros((stack.size,), jnp.int32) if variants is None else variants
    _check(stack, config, data, seeds, variants)
    if models_at_once is not None and (mesh is not None or not isinstance(models_at_once, int)
                                       or models_at_once < 1):
        raise ValueError(f"models_at_once must be None or an int >= 1, and None with a mesh; "
                         f"got {models_at_once!r}{' with a mesh' if mesh is not None else ''}")
    m, n = stack.size, _n_rows(data)
    # config.seed is not read (seeds are): one compiled program whatever it is.
    config = dataclasses.replace(config, seed=0)
    optimizer = make_optimizer(config, n // config.batch_size)
    per_model = (stack.params, stack.rest, variants, jnp.asarray(seeds, jnp.uint32))
    (params, rest, variants, seeds_), data = _on_mesh(mesh, m, per_model, data)
    params, rest, losses, accs = _train_program(stack.graphdef, optimizer, config, view, n,
                                                models_at_once, params, rest, data, variants,
                                                seeds_)
    if mesh is not None:
        params, rest = jax.tree.map(lambda a: a[:m], (params, rest))
    return Trained(Stack(stack.graphdef, params, rest), sharding.to_host(losses)[:m],
                   sharding.to_host(accs)[:m])


def fit_sequential(stack: Stack, config: TrainConfig, data, *, seeds: Sequence[int],
                   variants=None, view: View = take) -> Trained:
    """The same models as fit_many, trained one after another (each a one-model run of
    the same program, compiled once): same arguments, same result."""
    variants = jnp.zeros((stack.size,), jnp.int32) if variants is None else variants
    _check(stack, config, data, seeds, variants)
    row = lambda tree, i: jax.tree.map(lambda a: jnp.asarray(a)[i:i + 1], tree)
    runs = [fit_many(Stack(stack.graphdef, row(stack.params, i), row(stack.rest, i)), config,
                     data, seeds=[seeds[i]], variants=row(variants, i), view=view)
            for i in range(stack.size)]
    cat = lambda *a: jnp.concatenate(a)
    return Trained(Stack(stack.graphdef, jax.tree.map(cat, *[r.stack.params for r in runs]),
                         jax.tree.map(cat, *[r.stack.rest for r in runs])),
                   np.concatenate([r.losses for r in runs]),
                   np.concatenate([r.accuracies for r in runs]))


def _evaluate_one(graphdef, view, n: int, chunk: int, params, rest, data, variant):
    idx = jnp.arange(-(-n // chunk) * chunk).reshape(-1, chunk)

    def one(rows):
        x, y = view(data, variant, jnp.minimum(rows, n - 1))
        logits = infer(graphdef, params, rest, x)
        valid = rows < n
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(jnp.where(valid, loss, 0.0)), jnp.sum(valid & (jnp.argmax(logits, -1) == y))

    losses, correct = jax.lax.map(one, idx)
    return losses.sum() / n, correct.sum() / n


@functools.partial(compile_lib.jit, kind="forward", static_argnums=(0, 1, 2, 3))
def _evaluate_program(graphdef, view, n, chunk, params, rest, data, variants):
    one = functools.partial(_evaluate_one, graphdef, view, n, chunk)
    return jax.vmap(one, in_axes=(0, 0, None, 0))(params, rest, data, variants)


def evaluate_many(stack: Stack, data, *, variants=None, view: View = take,
                  chunk_size: int = 500, mesh=None) -> tuple[np.ndarray, np.ndarray]:
    """(mean loss (M,), accuracy (M,)) of each model, inference mode, on its own view of
    all N rows of data, chunk_size rows at a time. Arguments as fit_many."""
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an int >= 1; got {chunk_size!r}")
    m, n = stack.size, _n_rows(data)
    variants = jnp.zeros((m,), jnp.int32) if variants is None else variants
    per_model = (stack.params, stack.rest, variants)
    (params, rest, variants), data = _on_mesh(mesh, m, per_model, data)
    loss, acc = _evaluate_program(stack.graphdef, view, n, min(chunk_size, n), params, rest,
                                  data, variants)
    return sharding.to_host(loss)[:m], sharding.to_host(acc)[:m]
