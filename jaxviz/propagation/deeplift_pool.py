"""Captum's DeepLIFT max-pool rule on non-overlapping windows, in the forward pass.

For max pooling whose windows tile the input (window == stride, no padding or dilation:
the usual 2x2/2 pool) and for `reduce_max` over axes (global max pooling), each input
belongs to one window, so its multiplier is the window's output multiplier times a factor
that only depends on x and the reference x0:

    c_i = [i = argmax x] (ymax - y0) + [i = argmax x0] (y - ymax), divided by x_i - x0_i
          ([i = argmax x], the plain gradient, where |x_i - x0_i| < eps)

with y, y0 the window maxima and ymax = max(y, y0) (ties: the first maximum in row-major
window order, as XLA's and PyTorch's max pooling). The factors are computed once in the
forward pass on a reshaped view (no transposes), so the backward is one broadcast
multiplication;
other max-like reductions take `deeplift_rules`' general form (VJPs of the pool).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax


@dataclasses.dataclass(frozen=True)
class Windows:
    """Non-overlapping windows: `win` per axis (1: not pooled) over inputs of `shape`;
    `kept` is the part they tile (VALID pooling drops a ragged edge). Inputs are viewed as
    (d0/w0, w0, d1/w1, w1, ...): a reshape, no transpose; window axes are the odd ones."""
    shape: tuple
    win: tuple

    @property
    def kept(self) -> tuple:
        return tuple((d // w) * w for d, w in zip(self.shape, self.win))

    @property
    def axes(self) -> tuple:
        return tuple(range(1, 2 * len(self.shape), 2))

    def view(self, x: jax.Array) -> jax.Array:
        x = lax.slice(x, (0,) * x.ndim, self.kept)
        return x.reshape(tuple(s for d, w in zip(self.kept, self.win) for s in (d // w, w)))

    def unview(self, xv: jax.Array) -> jax.Array:
        """The inverse of view; the dropped edge is zero."""
        x = xv.reshape(self.kept)
        return jnp.pad(x, [(0, d - k) for d, k in zip(self.shape, self.kept)])

    def position(self, shape) -> jax.Array:
        """Each element's row-major index inside its window, broadcast to the view."""
        pos = jnp.zeros((), jnp.int32)
        for ax, w in zip(self.axes, self.win):
            pos = pos * w + lax.broadcasted_iota(jnp.int32, shape, ax)
        return pos


def windows(eqn, shape) -> Windows | None:
    """The windows of a max pool / reduce_max equation, or None (overlapping, padded...)."""
    shape, p = tuple(shape), eqn.params
    if eqn.primitive.name == "reduce_max":
        return Windows(shape, tuple(d if i in p["axes"] else 1 for i, d in enumerate(shape)))
    if eqn.primitive.name != "reduce_window_max":
        return None
    win = tuple(p["window_dimensions"])
    if (win != tuple(p["window_strides"]) or any(tuple(q) != (0, 0) for q in p["padding"])
            or any(d != 1 for d in p["base_dilation"])
            or any(d != 1 for d in p["window_dilation"])):
        return None
    return Windows(shape, win)


def _first_max(w: Windows, xv):
    """(mask of each window's first maximum, the maxima keeping window axes)."""
    y = xv.max(axis=w.axes, keepdims=True)
    pos = w.position(xv.shape)
    first = jnp.where(xv == y, pos, math.prod(w.win)).min(axis=w.axes, keepdims=True)
    return (pos == first).astype(xv.dtype), y


def factors(w: Windows, x, x0, eps: float) -> jax.Array:
    """c in the windows' view: input i's multiplier per unit of its window's."""
    w0 = dataclasses.replace(w, shape=tuple(x0.shape))  # x0 may be one shared reference
    xv, x0v = w.view(x), w0.view(x0)
    first, y = _first_max(w, xv)
    first0, y0 = _first_max(w0, x0v)
    ymax = jnp.maximum(y, y0)
    dx = xv - x0v
    small = jnp.abs(dx) < eps
    share = first * (ymax - y0) + first0 * (y - ymax)
    return jnp.where(small, first, share / jnp.where(small, 1, dx))


def multiplied(w: Windows, c: jax.Array, g: jax.Array) -> jax.Array:
    """The input multipliers for the output multipliers g: each window's g times c."""
    lead = tuple(s for d, k in zip(c.shape[0::2], w.win) for s in (d, 1))
    return w.unview(g.reshape(lead) * c)
