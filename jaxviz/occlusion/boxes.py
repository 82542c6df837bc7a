"""The values incremental occlusion carries, and their geometry (see `incremental`).

For every array of the model, a change is None (unchanged: the base forward pass), a `Box`
(per-position corners, one static size, and the new values inside it, vmapped over
positions), a `Flat` (a box seen through a flatten) or `Full` (all new values). Corners are
known for every position at trace time (`lo_np`), so box sizes are static: the max over
positions; `lo` holds the same corners as traced int32 for the positions computed now.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class Box(NamedTuple):
    """Changed values inside a box. lo_np: (P_all, r) corners of every position (sizes);
    lo: (Pc, r) int32 corners of the positions computed now; crop: (Pc, *size). aligned:
    the positions computed now are all positions, in order (lo == lo_np, known statically)."""
    lo_np: np.ndarray
    lo: jax.Array
    size: tuple
    crop: jax.Array
    aligned: bool = False


class Flat(NamedTuple):
    """A box of `base` seen through a flatten (a reshape merging the trailing axes, as before
    a dense layer). Kept as it is so a dense layer computes on the box's own rows; any other
    consumer gets the widened Box of the flattened array (`widen`)."""
    box: Box
    base: jax.Array
    out_shape: tuple


class Full(NamedTuple):
    """All values changed: vals (Pc, *shape)."""
    vals: jax.Array


def vslice(full, lo, size):
    return jax.vmap(lambda s: lax.dynamic_slice(full, tuple(s), size))(lo)


def to_full(base, ch):
    if isinstance(ch, Flat):
        ch = widen(ch)
    if ch is None or isinstance(ch, Full):
        return ch
    return Full(jax.vmap(lambda c, s: lax.dynamic_update_slice(base, c, tuple(s)))(ch.crop, ch.lo))


def _fit(lo_np, hi_np, shape):
    """Smallest static size holding [lo, hi) for every position, and corners moved inside."""
    size = tuple(int(min(max(1, v), n)) for v, n in zip((hi_np - lo_np).max(0), shape))
    return size, np.asarray(shape) - np.asarray(size)


def region(base, box, lo_np, lo, size, shift=None):
    """Values (Pc, *size) of the changed array in the region at lo; base may be padded, then
    `shift` (r,) moves the box into padded coordinates."""
    shift = np.zeros(len(size), int) if shift is None else np.asarray(shift)
    b_np, b = box.lo_np + shift, box.lo + jnp.asarray(shift, jnp.int32)
    if tuple(size) == tuple(box.size) and np.array_equal(b_np, lo_np):
        return box.crop  # the region is the box: nothing to gather
    u_size, cap = _fit(np.minimum(b_np, lo_np), np.maximum(b_np + box.size, lo_np + size),
                       base.shape)
    u_lo = jnp.minimum(jnp.minimum(b, lo), jnp.asarray(cap, jnp.int32))
    u = vslice(base, u_lo, u_size)
    u = place(u, box.crop, b - u_lo)
    if u_size == tuple(size):
        return u
    return jax.vmap(lambda v, s: lax.dynamic_slice(v, tuple(s), size))(u, lo - u_lo)


def place(u, crop, offset):
    """u with crop written at offset (per position): a select over a shifted view of the
    zero-padded crop, i.e. gathers and elementwise ops, which XLA CPU runs faster than the
    scatter that a vmapped dynamic_update_slice becomes."""
    room = np.asarray(u.shape[1:]) - np.asarray(crop.shape[1:])
    padded = jnp.pad(crop, [(0, 0)] + [(int(r), int(r)) for r in room])
    shifted = jax.vmap(lambda c, o: lax.dynamic_slice(c, tuple(o), u.shape[1:]))(
        padded, jnp.asarray(room, jnp.int32) - offset)
    inside = functools.reduce(jnp.logical_and, [
        (i >= o) & (i < o + n) for i, o, n in (
            (lax.broadcasted_iota(jnp.int32, u.shape, d + 1),
             offset[:, d].reshape((-1,) + (1,) * (u.ndim - 1)), crop.shape[d + 1])
            for d in range(u.ndim - 1))])
    return jnp.where(inside, shifted, u)


def union(boxes, shape):
    lo_np = np.min([b.lo_np for b in boxes], 0)
    size, cap = _fit(lo_np, np.max([b.lo_np + b.size for b in boxes], 0), shape)
    lo_np = np.minimum(lo_np, cap)
    lo = jnp.minimum(functools.reduce(jnp.minimum, [b.lo for b in boxes]), jnp.asarray(cap))
    return lo_np, lo.astype(jnp.int32), size



def axis_groups(old, new):
    """Split a reshape into (old axes, new axes) groups of equal size products, or None."""
    groups, i, j = [], 0, 0
    while i < len(old) and j < len(new):
        gi, gj, a, b = [i], [j], old[i], new[j]
        i, j = i + 1, j + 1
        while a != b:
            if a < b and i < len(old):
                a *= old[i]; gi.append(i); i += 1
            elif b < a and j < len(new):
                b *= new[j]; gj.append(j); j += 1
            else:
                return None
        groups.append((gi, gj))
    if any(old[k] != 1 for k in range(i, len(old))) or any(new[k] != 1 for k in range(j, len(new))):
        return None
    return groups, i, j



def widen(box, base=None, out_shape=None, groups=None):
    """The Box of reshape(base, out_shape) holding `box`: merged axes that the box does not
    cover whole are taken whole (so the box stays contiguous)."""
    if isinstance(box, Flat):
        box, base, out_shape = box
    base_out = jax.ShapeDtypeStruct(out_shape, base.dtype)
    groups = groups or axis_groups(base.shape, out_shape)[0]
    r_lo_np, r_lo, r_size = box.lo_np.copy(), box.lo, list(box.size)
    n_lo_np = np.zeros((box.lo_np.shape[0], base_out.ndim), int)
    n_lo = jnp.zeros((box.lo.shape[0], base_out.ndim), jnp.int32)
    n_size = list(base_out.shape)
    for gi, gj in groups:
        if len(gi) == 1:  # one axis split into several: align to the inner block
            # leading size-1 axes hold no index, so the block is under the first real axis
            gj = gj[next((n for n, k in enumerate(gj) if base_out.shape[k] != 1), len(gj) - 1):]
            d, inner = gi[0], math.prod(base_out.shape[k] for k in gj[1:])
            outer = base_out.shape[gj[0]]
            hi = -(-(box.lo_np[:, d] + box.size[d]) // inner)
            m = int(min(outer, (hi - box.lo_np[:, d] // inner).max()))
            q_np = np.minimum(box.lo_np[:, d] // inner, outer - m)
            q = jnp.minimum(box.lo[:, d] // inner, outer - m)
            r_lo_np[:, d], r_lo, r_size[d] = q_np * inner, r_lo.at[:, d].set(q * inner), m * inner
            n_lo_np[:, gj[0]], n_lo, n_size[gj[0]] = q_np, n_lo.at[:, gj[0]].set(q), m
        elif len(gj) == 1:  # several axes merged: contiguous if, before the first axis the
            # box spans by more than one index, it holds single indices, and after it, whole axes
            at = next((n for n, k in enumerate(gi) if box.size[k] > 1), len(gi) - 1)
            strides = [math.prod(base.shape[k] for k in gi[n + 1:]) for n in range(len(gi))]
            for k in gi[at + 1:]:
                r_lo_np[:, k], r_lo, r_size[k] = 0, r_lo.at[:, k].set(0), base.shape[k]
            merged = lambda lo: sum(lo[:, k] * strides[n] for n, k in enumerate(gi[:at + 1]))  # noqa: E731
            n_lo_np[:, gj[0]], n_lo = merged(box.lo_np), n_lo.at[:, gj[0]].set(merged(box.lo))
            n_size[gj[0]] = box.size[gi[at]] * strides[at]
        else:
            return None
    vals = region(base, box, r_lo_np, r_lo, tuple(r_size))
    return Box(n_lo_np, n_lo, tuple(n_size), vals.reshape((vals.shape[0],) + tuple(n_size)),
               box.aligned)


