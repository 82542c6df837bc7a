"""Objectives: values to maximize, composable with `+`, `-` and scalar `*` (Lucid-style).

An objective is evaluated on one unit's model output and named activations,
`obj(logits, acts) -> (B,)` with logits (B, K) and acts {layer: (B, ...)}, and is always
*maximized* (the loop negates it once). It is two parts: a hashable `node` saying how to
compute (static under jit) and `args`, a pytree of small arrays (class index, channel,
direction, weights). Objectives of the same form differ only in `args`, so a list of them
is stacked and evaluated for every unit at once with `jax.vmap`:

    0.2 * channel("conv2", 3) + class_logit(7)
    [class_logit(k) for k in range(10)]        # one node, args stacked to (10,)
    margin(3)                                  # logit 3 minus the best other logit
    region(mask, k=1)                          # class 1 of a dense (N, H, W, K) output

The same objectives are the targets of every attribution method (`core.targets`); a class
objective's index may also be one per image, (N,).

A user objective is a plain function of the activations (`acts["logits"]` is the output):

    custom(lambda acts, c: acts["conv2"][..., c].mean(axis=(1, 2)), 5)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class Objective:
    """A value to maximize: `node(args, logits, acts) -> (B,)`. Compose with + - and *."""

    def __init__(self, node, args, name: str):
        self.node, self.args, self.name = node, args, name

    def __call__(self, logits, acts):
        return self.node(self.args, logits, acts)

    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self  # lets sum([...]) start from 0
        other = as_objective(other)
        return Objective(_Sum(self.node, other.node), (self.args, other.args),
                         f"{self.name} + {other.name}")

    __radd__ = __add__

    def __mul__(self, w):
        if not isinstance(w, (int, float, np.number)) or isinstance(w, bool):
            raise TypeError(f"an objective can only be scaled by a number; got {type(w).__name__}")
        return Objective(_Scale(self.node), (np.float32(w), self.args), f"{w:g} * ({self.name})")

    __rmul__ = __mul__

    def __neg__(self):
        return -1.0 * self

    def __sub__(self, other):
        return self + (-as_objective(other))

    def __repr__(self):
        return f"Objective({self.name})"


def _rest_mean(a):
    return a.reshape(a.shape[0], -1).mean(axis=1)


def _pick(z, k):
    """z (B, K) at class k: one class for every row (k scalar) or one per row (k (B,))."""
    k = jnp.asarray(k)
    if k.ndim == 0:
        return jnp.take(z, k, axis=-1)
    return jnp.take_along_axis(z, k[:, None], axis=-1)[:, 0]


def _check_classes(k, out_shape):
    if len(out_shape) != 2:
        raise ValueError(f"class objectives need (N, K) model outputs; got {out_shape}")
    ks = np.atleast_1d(np.asarray(k))
    if ks.size > 1 and ks.shape != (out_shape[0],):
        raise ValueError(f"per-image class indices must be one per image, ({out_shape[0]},); "
                         f"got shape {ks.shape}")
    for i in ks:
        _in_range(int(i), out_shape[-1], "class index", "the model has {n} classes")


@dataclass(frozen=True)
class _Logit:
    prob: bool
    log: bool = False  # with prob: the log-softmax (perturbation methods' score="log_prob")

    def __call__(self, k, logits, acts):
        z = logits.astype(jnp.float32)  # a bfloat16 model's scores are float32 too
        if self.prob:
            z = jax.nn.log_softmax(z, axis=-1) if self.log else jax.nn.softmax(z, axis=-1)
        return _pick(z, k)

    def check(self, k, out_shape, shapes):
        _check_classes(k, out_shape)


@dataclass(frozen=True)
class _Margin:
    """Logit k minus the largest other logit (> 0 exactly when k is the predicted class)."""

    def __call__(self, k, logits, acts):
        z = logits.astype(jnp.float32)
        zk = _pick(z, k)
        k = jnp.broadcast_to(jnp.asarray(k), z.shape[:1])[:, None]
        others = jnp.where(jnp.arange(z.shape[-1]) == k, -jnp.inf, z)
        return zk - others.max(axis=-1)

    def check(self, k, out_shape, shapes):
        _check_classes(k, out_shape)
        if out_shape[-1] < 2:
            raise ValueError(f"margin needs at least 2 classes; the model has {out_shape[-1]}")


@dataclass(frozen=True)
class _Region:
    """Sum of a dense output (B, H, W, K) weighted by a mask (H, W, K) (or (H, W) and a
    class: the mask is put on that class's channel)."""
    by_class: bool

    def __call__(self, args, logits, acts):
        mask, k = args
        z = logits.astype(jnp.float32)
        if self.by_class:
            mask = mask[..., None] * (jnp.arange(z.shape[-1]) == k)
        return jnp.einsum("bhwk,hwk->b", z, mask)

    def check(self, args, out_shape, shapes):
        mask, k = args
        if len(out_shape) != 4:
            raise ValueError(f"region needs a dense model output (N, H, W, K) (segmentation-"
                             f"like); the model's output is {out_shape}")
        want = out_shape[1:3] if self.by_class else out_shape[1:]
        if tuple(np.shape(mask)) != tuple(want):
            raise ValueError(f"region mask must have shape {tuple(want)} (the output's "
                             f"{'(H, W)' if self.by_class else '(H, W, K)'}); got "
                             f"{tuple(np.shape(mask))}")
        if self.by_class:
            _in_range(int(k), out_shape[-1], "class index", "the output has {n} classes")


@dataclass(frozen=True)
class _Channel:
    layer: str

    def __call__(self, c, logits, acts):
        return _rest_mean(jnp.take(_layer(acts, self.layer), c, axis=-1))

    def check(self, c, out_shape, shapes):
        shape = _known(self.layer, shapes)
        _in_range(int(c), shape[-1], "channel", f"layer {self.layer!r} has {{n}} channels")


@dataclass(frozen=True)
class _Neuron:
    layer: str

    def __call__(self, cyx, logits, acts):
        a = _layer(acts, self.layer)
        c, y, x = cyx
        y = jnp.where(y < 0, a.shape[1] // 2, y)  # -1 means the centre
        x = jnp.where(x < 0, a.shape[2] // 2, x)
        return a[:, y, x, c]

    def check(self, cyx, out_shape, shapes):
        shape = _known(self.layer, shapes)
        if len(shape) != 4:
            raise ValueError(f"neuron needs a conv layer (N, H, W, C); {self.layer!r} is {shape}")
        c, y, x = (int(v) for v in cyx)
        _in_range(c, shape[3], "channel", f"layer {self.layer!r} has {{n}} channels")
        if y >= 0:
            _in_range(y, shape[1], "neuron y", f"layer {self.layer!r} has height {{n}}")
        if x >= 0:
            _in_range(x, shape[2], "neuron x", f"layer {self.layer!r} has width {{n}}")


@dataclass(frozen=True)
class _Direction:
    layer: str

    def __call__(self, v, logits, acts):
        return _rest_mean(jnp.tensordot(_layer(acts, self.layer), v, axes=[[-1], [0]]))

    def check(self, v, out_shape, shapes):
        shape = _known(self.layer, shapes)
        if np.shape(v) != (shape[-1],):
            raise ValueError(f"direction for layer {self.layer!r} must have shape ({shape[-1]},) "
                             f"(one weight per channel); got {np.shape(v)}")
        if not np.all(np.isfinite(v)):
            raise ValueError("direction contains NaN/inf")


@dataclass(frozen=True)
class _Custom:
    fn: Callable

    def __call__(self, args, logits, acts):
        out = jnp.asarray(self.fn({**acts, "logits": logits}, *args))
        return jnp.broadcast_to(out, logits.shape[:1]) if out.ndim == 0 else out.reshape(-1)

    def check(self, args, out_shape, shapes):
        pass  # a user function is checked by running it (eval_shape in maximize)


@dataclass(frozen=True)
class _Sum:
    a: Any
    b: Any

    def __call__(self, args, logits, acts):
        return self.a(args[0], logits, acts) + self.b(args[1], logits, acts)

    def check(self, args, out_shape, shapes):
        self.a.check(args[0], out_shape, shapes)
        self.b.check(args[1], out_shape, shapes)


@dataclass(frozen=True)
class _Scale:
    inner: Any

    def __call__(self, args, logits, acts):
        return args[0] * self.inner(args[1], logits, acts)

    def check(self, args, out_shape, shapes):
        self.inner.check(args[1], out_shape, shapes)


@dataclass(frozen=True)
class _Switch:
    """Objectives of different forms: unit u evaluates branch u (args: (u, all args))."""
    nodes: tuple

    def __call__(self, args, logits, acts):
        u, every = args
        branches = [lambda l, a, n=n, g=g: n(g, l, a) for n, g in zip(self.nodes, every)]
        return jax.lax.switch(u, branches, logits, acts)


def _layer(acts, layer):
    return acts[layer]


def _known(layer, shapes: Mapping[str, tuple]) -> tuple:
    if layer not in shapes:
        raise ValueError(f"unknown layer {layer!r}; known layers: {list(shapes)}")
    return shapes[layer]


def _in_range(i: int, n: int, what: str, has: str):
    if not 0 <= i < n:
        raise ValueError(f"{what} {i} is out of range: {has.format(n=n)} (0..{n - 1})")


def _index(i, name: str) -> np.int32:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise ValueError(f"{name} must be an int; got {i!r}")
    return np.int32(i)


def class_logit(k: int) -> Objective:
    """The pre-softmax logit of class k (no 'swap softmax for linear' needed)."""
    return Objective(_Logit(False), _index(k, "class index"), f"logit {k}")


def class_prob(k: int) -> Objective:
    """The softmax probability of class k."""
    return Objective(_Logit(True), _index(k, "class index"), f"prob {k}")


def margin(k: int) -> Objective:
    """Logit of class k minus the best other class's logit (the margin to the runner-up)."""
    return Objective(_Margin(), _index(k, "class index"), f"margin {k}")


def region(mask, k: int | None = None) -> Objective:
    """Sum of a dense (N, H, W, K) output (segmentation-like) over a mask.

    mask: (H, W, K) weights on the output, or (H, W) with k: the mask on class k's channel
    (a boolean mask counts its pixels; float weights weight them).
    """
    m = np.asarray(mask, np.float32)
    if not np.all(np.isfinite(m)):
        raise ValueError("region mask contains NaN/inf")
    if k is None:
        if m.ndim != 3:
            raise ValueError(f"region mask must be (H, W, K), or (H, W) with a class k; got "
                             f"shape {m.shape}")
        return Objective(_Region(False), (m, np.int32(-1)), "region")
    if m.ndim != 2:
        raise ValueError(f"region mask with a class k must be (H, W); got shape {m.shape}")
    return Objective(_Region(True), (m, _index(k, "class index")), f"region {k}")


def channel(layer: str, c: int) -> Objective:
    """Mean activation of channel c of `layer` (over all positions; a dense unit as is)."""
    return Objective(_Channel(layer), _index(c, "channel"), f"{layer}:{c}")


def neuron(layer: str, c: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel c at position (y, x) of a conv layer (default: the centre)."""
    args = tuple(_index(v, n) if v is not None else np.int32(-1)
                 for v, n in ((c, "channel"), (y, "neuron y"), (x, "neuron x")))
    for v, n in zip(args, ("channel", "neuron y", "neuron x")):
        if v < 0 and not (n != "channel" and (y, x)[n == "neuron x"] is None):
            raise ValueError(f"{n} must be >= 0 (None for the centre); got {int(v)}")
    return Objective(_Neuron(layer), args, f"{layer}:{c}@{y},{x}")


def direction(layer: str, v) -> Objective:
    """Mean over positions of the activation's dot product with v: (C,)."""
    return Objective(_Direction(layer), np.asarray(v, np.float32), f"{layer}·v")


def custom(fn: Callable, *args, name: str | None = None) -> Objective:
    """A user objective `fn(acts, *args) -> (B,) or scalar`, acts = {layer: ..., "logits": ...}.

    args are arrays that vary per unit (stacked when a list of them is maximized); pass the
    same `fn` object for every unit so the list runs as one batched program.
    """
    if not callable(fn):
        raise TypeError(f"custom objective must be callable; got {type(fn).__name__}")
    args = tuple(np.asarray(a) for a in args)
    return Objective(_Custom(fn), args, name or getattr(fn, "__name__", "custom"))


def as_objective(obj) -> Objective:
    if isinstance(obj, Objective):
        return obj
    if callable(obj):
        return custom(obj)
    raise TypeError(f"objective must be an Objective (class_logit(k), channel(layer, c), ...) "
                    f"or a function of the activations dict; got {type(obj).__name__}")


def batch(objectives: Sequence[Objective]):
    """Stack U objectives for vmap -> (node, unit_args with leading axis U, shared args).

    Same form: args stacked. Mixed forms: a `_Switch` over the forms, unit args = unit index.
    """
    first = objectives[0]
    sig = _signature(first)
    if all(_signature(o) == sig for o in objectives[1:]):
        stacked = jax.tree.map(lambda *a: np.stack(a), *(o.args for o in objectives))
        return first.node, stacked, None
    node = _Switch(tuple(o.node for o in objectives))
    return node, np.arange(len(objectives), dtype=np.int32), tuple(o.args for o in objectives)


def evaluate(node, unit_args, shared, logits, acts):
    """One unit's objective values (B,), given its slice of the batched args."""
    return node((unit_args, shared) if isinstance(node, _Switch) else unit_args, logits, acts)


def _signature(obj: Objective):
    leaves, tree = jax.tree.flatten(obj.args)
    return obj.node, tree, tuple((np.shape(a), np.asarray(a).dtype) for a in leaves)
