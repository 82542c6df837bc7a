"""What the layer forms share: checked inputs, the target's score and the model cut at a layer.

A layer form reads the layer's activation A = probe.run(params, x)[1][layer] and takes
gradients there through the Probe's `edits`, never by editing the model:

    grad_and_act(...)   A(x) and dS/dA at x: the edit a -> a + delta, differentiated at 0
    grad_at(..., a)     dS/dA with the layer's output *replaced* by a (what comes after the
                        layer, run on a; Captum's LayerIntegratedGradients path)

S is the target's score per image (`core.targets`): the class logit for class indices or
None (the predicted class, reported in extras["target"]), obj(logits, acts) for an
Objective (jaxviz.core.objectives). An objective reading a layer *before* `layer`
does not depend on what replaces `layer`'s output (its gradient there is zero).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, targets
from jaxviz.core import compile as compile_lib
from jaxviz.core.probe import Probe
from jaxviz.core.result import Attribution


class Checked(NamedTuple):
    """A layer form's checked call: images x (N, H, W, C), the resolved target, its
    score's static node and array args (score = node(args, logits, acts) -> (N,)), the
    layer and its activation shape (N, ...)."""
    x: jax.Array
    target: targets.Target
    node: Any
    args: Any
    layer: str
    shape: tuple


def check_layer(fn, layer, x_shape, method: str) -> tuple:
    """The activation shape (N, ...) of `layer`, or a ValueError naming what is wrong."""
    if not isinstance(fn, Probe):
        raise ValueError(f"{method} reads a layer's activations: pass a jaxviz.core.probe.Probe "
                         f"(jaxviz.core.probe.from_model(model)) as fn; got {type(fn).__name__}")
    if not isinstance(layer, str):
        raise ValueError(f"{method}: layer must be a layer name (one of "
                         f"{list(fn.layer_shapes(tuple(x_shape)))}); got {layer!r}")
    shape = fn.check_layer(layer, tuple(x_shape))
    if not (isinstance(shape, tuple) and all(isinstance(d, int) for d in shape)):
        raise ValueError(f"{method}: layer {layer!r} returns a {type(shape).__name__} of "
                         f"arrays, not one array; pick a layer with one output")
    return shape


def prepare(fn, params, images, target, layer, method: str) -> Checked:
    """Checked images, target and layer. target: as `core.targets.resolve` takes it (a
    class index, one per image, None for the predicted class, an Objective), one at a
    time."""
    x = analysis.check_images(fn, params, images)
    shape = check_layer(fn, layer, x.shape, method)
    t = targets.resolve(fn, params, x, target)
    if t.many:
        raise ValueError(f"{method} explains one target at a time; got {t.count} "
                         f"({', '.join(t.names[:4])}{', ...' if t.count > 4 else ''}): call "
                         f"it once per target")
    return Checked(x, t, t.node, t.args, layer, shape)


def finish(res: Attribution, c: Checked) -> Attribution:
    """res, with the classes used in extras["target"] when they were predicted."""
    if c.target.source != "predicted":
        return res
    return Attribution(res.map, {**res.extras, "target": c.target.classes})


def score(node, args, logits, acts, copies: int = 1) -> jax.Array:
    """The target's score per image, float32 (N,). copies: the batch holds that many
    copies of the N images stacked along axis 0 (k * N rows, copy-major), each scored
    with the same args (a per-image class lines up with its image) -> (k * N,)."""
    if copies == 1:
        return jnp.asarray(node(args, logits, acts), jnp.float32)

    def split(v):
        return v.reshape((copies, -1) + v.shape[1:])
    per_copy = jax.vmap(lambda lg, ac: node(args, lg, ac))(split(logits),
                                                          jax.tree.map(split, acts))
    return jnp.asarray(per_copy, jnp.float32).reshape(-1)


def run_scored(probe, params, x, layer, node, args, copies: int = 1):
    """(S(x) (N,), A(x)) from one forward pass."""
    logits, acts = probe.run(params, x)
    return score(node, args, logits, acts, copies), acts[layer]


def activation(probe, params, x, layer) -> jax.Array:
    return probe.run(params, x)[1][layer]


def grad_and_act(probe, params, x, layer, node, args, shape, copies: int = 1):
    """(A(x), dS/dA at x), both shaped like the layer's activation `shape`."""
    def run(params, x, delta):
        return probe.run(params, x, edits={layer: lambda a: a + delta})

    def total(delta):
        logits, acts = compile_lib.fast_model(run)(params, x, delta)
        return score(node, args, logits, acts, copies).sum(), acts[layer]
    g, a = jax.grad(total, has_aux=True)(jnp.zeros(shape, x.dtype))
    return a, g


def tail_score(probe, params, x, layer, node, args, a, copies: int = 1):
    """S with `layer`'s output replaced by a (N, ...): what comes after the layer, run on a.
    x: images with as many rows as a (what runs before the layer is dropped by XLA)."""
    def run(params, x, a):
        return probe.run(params, x, edits={layer: lambda _: a})
    logits, acts = compile_lib.fast_model(run)(params, x, a)
    return score(node, args, logits, acts, copies)


def grad_at(probe, params, x, layer, node, args, a, copies: int = 1):
    """dS/dA at a replaced activation a (N, ...) -> same shape."""
    return jax.grad(lambda a: tail_score(probe, params, x, layer, node, args, a,
                                         copies).sum())(a)


def rows(v: jax.Array, c: int) -> jax.Array:
    """c copies of an (N, ...) batch stacked into one (c * N, ...) batch, copy-major."""
    return jnp.tile(v, (c,) + (1,) * (v.ndim - 1))


def along(s: jax.Array, start: jax.Array, stop: jax.Array) -> jax.Array:
    """start + s_k (stop - start) for c path points s (c,), as one (c * N, ...) batch."""
    s = s.reshape((-1,) + (1,) * start.ndim)
    return (start[None] + s * (stop - start)[None]).reshape((-1,) + start.shape[1:])


def per_point(v: jax.Array, c: int) -> jax.Array:
    """A (c * N, ...) batch back as (c, N, ...)."""
    return v.reshape((c, -1) + v.shape[1:])


def path_sum(f, points, weights, chunk: int | None):
    """sum_k weights[k] * f(points)[k], `chunk` points at a time (a scan over chunks keeps
    memory at one chunk's worth; None: all at once).

    points: pytree of numpy arrays with leading axis P; weights: (P,) numpy; f: a chunk of
    c points (leading axis c) -> (c, ...), run as one batch of c * N rows (`along`,
    `per_point`): on XLA CPU a model vmapped over points runs several times slower than
    the same rows as one batch (a vmapped max pool does not fuse)."""
    weights = np.asarray(weights, np.float32)
    n = len(weights)

    def block(pts, w):
        return jnp.tensordot(w, f(pts), axes=1)
    if chunk is None or chunk >= n:
        return block(jax.tree.map(jnp.asarray, points), jnp.asarray(weights))
    pad = -n % chunk  # padded points repeat the last one, with weight 0

    def shaped(v):
        v = np.concatenate([v, np.repeat(v[-1:], pad, 0)])
        return jnp.asarray(v.reshape((-1, chunk) + v.shape[1:]))
    pts = jax.tree.map(shaped, points)
    ws = jnp.asarray(np.concatenate([weights, np.zeros(pad, np.float32)]).reshape(-1, chunk))
    first = jax.tree.map(lambda v: v[0], pts)
    init = jnp.zeros(jax.eval_shape(block, first, ws[0]).shape, jnp.float32)
    return jax.lax.scan(lambda acc, pw: (acc + block(*pw), None), init, (pts, ws))[0]


def flat_sum(a: jax.Array) -> jax.Array:
    """Per-image sum of an (N, ...) map -> (N,)."""
    return a.reshape(a.shape[0], -1).sum(axis=1)
