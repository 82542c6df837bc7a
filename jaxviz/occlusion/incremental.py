"""Incremental occlusion (after Krypton, Nakandala et al., SIGMOD 2019): recompute only what changed.

A patch changes a small box of the input; a convolution or pooling spreads it to a slightly
larger box of its output, elementwise ops keep it, and so on. This module interprets the
model's jaxpr (traced for one image) and carries, for every value, either "unchanged" (the
base forward pass), a `Box` (per-position corners, one static size, and the new values inside
it, vmapped over positions) or `Full` (all new values, once a box no longer fits, e.g. a
flatten feeding a dense layer, which then runs as one matmul over every position). Corners
are known for every position at trace time, so box sizes are static: the max over positions.
Rules: elementwise ops, conv_general_dilated, reduce_window max/min/sum, reshape (splits and
merges, e.g. reshape-based pooling), transpose, reduce_sum, dot_general (a dense layer after
a box: base output + delta @ W[box rows], one matmul per distinct box when all positions run
in one chunk), and calls (jit, custom_jvp/vjp) by recursion; any other primitive runs on
Full values (correct, no saving). A flatten keeps its box as a `Flat` until a dense layer
reads it, which then places only the box's delta into a band of weight rows. If tracing fails,
`check_supported` warns once and the exact path is used. The program is many small
materialized convolutions, which `jaxviz.occlusion` compiles with `jaxviz.core.xla_cpu`'s options.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

_ELEMENTWISE = set("""abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp
convert_element_type copy cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag
integer_pow is_finite le log log1p logistic lt max min mul ne neg nextafter not or pow real
reduce_precision rem round rsqrt select_n sign sin sinh sqrt square sub tan tanh xor""".split())
_CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
          "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
          "custom_vjp_call_jaxpr": "fun_jaxpr", "remat": "jaxpr", "checkpoint": "jaxpr"}
_POOL_INIT = {"reduce_window_max": -np.inf, "reduce_window_min": np.inf, "reduce_window_sum": 0.0}


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
    consumer gets the widened Box of the flattened array (`_widen`)."""
    box: Box
    base: jax.Array
    out_shape: tuple


class Full(NamedTuple):
    """All values changed: vals (Pc, *shape)."""
    vals: jax.Array


def _vslice(full, lo, size):
    return jax.vmap(lambda s: lax.dynamic_slice(full, tuple(s), size))(lo)


def _to_full(base, ch):
    if isinstance(ch, Flat):
        ch = _widen(ch)
    if ch is None or isinstance(ch, Full):
        return ch
    return Full(jax.vmap(lambda c, s: lax.dynamic_update_slice(base, c, tuple(s)))(ch.crop, ch.lo))


def _fit(lo_np, hi_np, shape):
    """Smallest static size holding [lo, hi) for every position, and corners moved inside."""
    size = tuple(int(min(max(1, v), n)) for v, n in zip((hi_np - lo_np).max(0), shape))
    return size, np.asarray(shape) - np.asarray(size)


def _region(base, box, lo_np, lo, size, shift=None):
    """Values (Pc, *size) of the changed array in the region at lo; base may be padded, then
    `shift` (r,) moves the box into padded coordinates."""
    shift = np.zeros(len(size), int) if shift is None else np.asarray(shift)
    b_np, b = box.lo_np + shift, box.lo + jnp.asarray(shift, jnp.int32)
    if tuple(size) == tuple(box.size) and np.array_equal(b_np, lo_np):
        return box.crop  # the region is the box: nothing to gather
    u_size, cap = _fit(np.minimum(b_np, lo_np), np.maximum(b_np + box.size, lo_np + size),
                       base.shape)
    u_lo = jnp.minimum(jnp.minimum(b, lo), jnp.asarray(cap, jnp.int32))
    u = _vslice(base, u_lo, u_size)
    u = _place(u, box.crop, b - u_lo)
    if u_size == tuple(size):
        return u
    return jax.vmap(lambda v, s: lax.dynamic_slice(v, tuple(s), size))(u, lo - u_lo)


def _place(u, crop, offset):
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


def _union(boxes, shape):
    lo_np = np.min([b.lo_np for b in boxes], 0)
    size, cap = _fit(lo_np, np.max([b.lo_np + b.size for b in boxes], 0), shape)
    lo_np = np.minimum(lo_np, cap)
    lo = jnp.minimum(functools.reduce(jnp.minimum, [b.lo for b in boxes]), jnp.asarray(cap))
    return lo_np, lo.astype(jnp.int32), size


def _windowed(base_lo_np, base_lo, size, n_in, n_out, k, s):
    """Output range of a window op (kernel k, stride s; padded input coords) per dim."""
    def rng(xp, a):
        first = xp.maximum(0, -((k - 1 - a) // s))        # ceil((a - k + 1) / s)
        return first, xp.minimum(n_out - 1, (a + size - 1) // s)
    f_np, l_np = rng(np, base_lo_np)
    o_size = int(min(n_out, max(1, (l_np - f_np + 1).max())))
    f = rng(jnp, base_lo)[0]
    return np.minimum(f_np, n_out - o_size), jnp.minimum(f, n_out - o_size), o_size


def _window_rule(base, box, out_shape, dims, ks, ss, pads, pad_value, apply):
    """conv / pooling: dims are the windowed axes of input and output, in order."""
    cfg = [(0, 0, 0)] * base.ndim
    for (di, _), (pl, ph) in zip(dims, pads):
        cfg[di] = (pl, ph, 0)
    base_p = lax.pad(base, jnp.asarray(pad_value, base.dtype), cfg)
    shift = np.array([c[0] for c in cfg])
    r_lo_np = np.zeros_like(box.lo_np)
    r_lo = jnp.zeros_like(box.lo)
    r_size = list(base.shape)
    o_lo_np = np.zeros((box.lo_np.shape[0], len(out_shape)), int)
    o_lo = jnp.zeros((box.lo.shape[0], len(out_shape)), jnp.int32)
    o_size = list(out_shape)
    for (di, do), k, s in zip(dims, ks, ss):
        f_np, f, n = _windowed(box.lo_np[:, di] + shift[di], box.lo[:, di] + shift[di],
                               box.size[di], base_p.shape[di], out_shape[do], k, s)
        o_lo_np[:, do], o_lo, o_size[do] = f_np, o_lo.at[:, do].set(f), n
        r_lo_np[:, di], r_lo, r_size[di] = f_np * s, r_lo.at[:, di].set(f * s), (n - 1) * s + k
    vals = _region(base_p, box, r_lo_np, r_lo, tuple(r_size), shift)
    return Box(o_lo_np, o_lo, tuple(o_size), jax.vmap(apply)(vals), box.aligned)


def _conv(eqn, base_ins, chs, base_out):
    p = eqn.params
    dn = p["dimension_numbers"]
    if (chs[1] is not None or not isinstance(chs[0], Box) or any(d != 1 for d in p["lhs_dilation"])
            or p["batch_group_count"] != 1):
        return None
    lhs, rhs = base_ins
    ks = [(rhs.shape[d] - 1) * r + 1 for d, r in zip(dn.rhs_spec[2:], p["rhs_dilation"])]
    dims = list(zip(dn.lhs_spec[2:], dn.out_spec[2:]))
    params = dict(p, padding=tuple((0, 0) for _ in ks))
    return _window_rule(lhs, chs[0], base_out.shape, dims, ks, p["window_strides"], p["padding"],
                        0.0, lambda v: eqn.primitive.bind(v, rhs, **params))


def _pool(eqn, base_ins, chs, base_out):
    p = eqn.params
    if not isinstance(chs[0], Box) or any(d != 1 for d in p["base_dilation"]):
        return None
    ks = [(w - 1) * d + 1 for w, d in zip(p["window_dimensions"], p["window_dilation"])]
    dims = [(d, d) for d in range(base_out.ndim)]
    params = dict(p, padding=tuple((0, 0) for _ in ks))
    return _window_rule(base_ins[0], chs[0], base_out.shape, dims, ks, p["window_strides"],
                        p["padding"], _POOL_INIT[eqn.primitive.name],
                        lambda v: eqn.primitive.bind(v, **params))


def _elementwise(eqn, base_ins, chs, base_out):
    shape = base_out.shape
    boxes = [c for c in chs if c is not None]
    if any(not isinstance(c, Box) for c in boxes) or any(
            c is not None and b.shape != shape for b, c in zip(base_ins, chs)):
        return None
    lo_np, lo, size = _union(boxes, shape)
    args, axes = [], []
    for b, c in zip(base_ins, chs):
        if c is not None:
            args.append(_region(b, c, lo_np, lo, size)), axes.append(0)
        elif b.ndim == 0:
            args.append(b), axes.append(None)
        else:  # broadcasting operand: slice along its full-size axes only
            keep = np.array([n == m for n, m in zip(b.shape, shape)])
            sz = tuple(int(s) if k else 1 for s, k in zip(size, keep))
            args.append(_vslice(b, jnp.where(jnp.asarray(keep), lo, 0), sz)), axes.append(0)
    crop = jax.vmap(lambda *a: eqn.primitive.bind(*a, **eqn.params), in_axes=tuple(axes))(*args)
    return Box(lo_np, lo, size, crop, all(b.aligned for b in boxes))


def _groups(old, new):
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


def _reshape(eqn, base_ins, chs, base_out):
    box, base = chs[0], base_ins[0]
    if not isinstance(box, Box) or eqn.params.get("dimensions") is not None:
        return None
    found = _groups(base.shape, base_out.shape)
    if found is None:
        return None
    groups = found[0]
    *kept, (last_in, last_out) = groups
    if (all(len(gi) == 1 and len(gj) == 1 for gi, gj in kept) and len(last_out) == 1
            and last_out[0] == base_out.ndim - 1 and len(last_in) > 1
            and any(box.size[d] < base.shape[d] for d in last_in[1:])):
        return Flat(box, base, tuple(base_out.shape))
    return _widen(box, base, tuple(base_out.shape), groups)


def _widen(box, base=None, out_shape=None, groups=None):
    """The Box of reshape(base, out_shape) holding `box`: merged axes that the box does not
    cover whole are taken whole (so the box stays contiguous)."""
    if isinstance(box, Flat):
        box, base, out_shape = box
    base_out = jax.ShapeDtypeStruct(out_shape, base.dtype)
    groups = groups or _groups(base.shape, out_shape)[0]
    r_lo_np, r_lo, r_size = box.lo_np.copy(), box.lo, list(box.size)
    n_lo_np = np.zeros((box.lo_np.shape[0], base_out.ndim), int)
    n_lo = jnp.zeros((box.lo.shape[0], base_out.ndim), jnp.int32)
    n_size = list(base_out.shape)
    for gi, gj in groups:
        if len(gi) == 1:  # one axis split into several: align to the inner block
            d, inner = gi[0], math.prod(base_out.shape[k] for k in gj[1:])
            outer = base_out.shape[gj[0]]
            hi = -(-(box.lo_np[:, d] + box.size[d]) // inner)
            m = int(min(outer, (hi - box.lo_np[:, d] // inner).max()))
            q_np = np.minimum(box.lo_np[:, d] // inner, outer - m)
            q = jnp.minimum(box.lo[:, d] // inner, outer - m)
            r_lo_np[:, d], r_lo, r_size[d] = q_np * inner, r_lo.at[:, d].set(q * inner), m * inner
            n_lo_np[:, gj[0]], n_lo, n_size[gj[0]] = q_np, n_lo.at[:, gj[0]].set(q), m
        elif len(gj) == 1:  # several axes merged: contiguous only if inner axes are whole
            inner = math.prod(base.shape[k] for k in gi[1:])
            for k in gi[1:]:
                r_lo_np[:, k], r_lo, r_size[k] = 0, r_lo.at[:, k].set(0), base.shape[k]
            d = gi[0]
            n_lo_np[:, gj[0]] = box.lo_np[:, d] * inner
            n_lo, n_size[gj[0]] = n_lo.at[:, gj[0]].set(box.lo[:, d] * inner), box.size[d] * inner
        else:
            return None
    vals = _region(base, box, r_lo_np, r_lo, tuple(r_size))
    return Box(n_lo_np, n_lo, tuple(n_size), vals.reshape((vals.shape[0],) + tuple(n_size)),
               box.aligned)


def _transpose(eqn, base_ins, chs, base_out):
    box, perm = chs[0], list(eqn.params["permutation"])
    if not isinstance(box, Box):
        return None
    return Box(box.lo_np[:, perm], box.lo[:, perm], tuple(box.size[k] for k in perm),
               jnp.transpose(box.crop, [0] + [k + 1 for k in perm]), box.aligned)


def _reduce_sum(eqn, base_ins, chs, base_out):
    box, axes = chs[0], tuple(eqn.params["axes"])
    if not isinstance(box, Box):
        return None
    keep = [d for d in range(base_ins[0].ndim) if d not in axes]
    diff = (box.crop - _vslice(base_ins[0], box.lo, box.size)).sum(tuple(a + 1 for a in axes))
    size = tuple(box.size[d] for d in keep)
    lo_np, lo = box.lo_np[:, keep], box.lo[:, keep]
    return Box(lo_np, lo, size, _vslice(base_out, lo, size) + diff.astype(base_out.dtype),
               box.aligned)


def _dot(eqn, base_ins, chs, base_out):
    """A dense layer after a box: base output + delta @ W[box rows], one matmul per distinct
    box (positions grouped statically), instead of every position's full product."""
    (box, w_ch), (lhs, w) = chs, base_ins
    (l_con, r_con), (l_bat, _) = eqn.params["dimension_numbers"]
    if w_ch is not None or l_bat:
        return None
    if isinstance(box, Flat):
        if box.box.aligned and tuple(l_con) == (lhs.ndim - 1,):
            return _dot_flat(eqn, box, w, base_out)
        box = _widen(box)
    if (not isinstance(box, Box) or not box.aligned
            or any(box.size[d] != lhs.shape[d] for d in range(lhs.ndim) if d not in l_con)):
        return None
    delta = box.crop - _vslice(lhs, box.lo, box.size)
    return _grouped_dot(eqn, delta, box.lo_np[:, list(l_con)],
                        [box.size[d] for d in l_con], w, base_out)


def _dot_flat(eqn, flat, w, base_out):
    """Dense layer on a flattened box: the box's delta goes into a band (the box's extent
    along the first merged axis, the later merged axes whole), so the weight rows of each
    band are one contiguous slice, without first gathering the band's base values."""
    box, src = flat.box, flat.base
    first = len(flat.out_shape) - 1  # merged axes of src start here (kept axes are 1:1)
    if any(box.size[d] != src.shape[d] for d in range(first)):
        return None
    delta = box.crop - _vslice(src, box.lo, box.size)
    band_size = tuple(box.size[:first + 1]) + tuple(src.shape[first + 1:])
    offset = box.lo.at[:, :first + 1].set(0)  # the box's place inside its band
    band = _place(jnp.zeros((delta.shape[0],) + band_size, delta.dtype), delta, offset)
    inner = math.prod(src.shape[first + 1:])
    rows = band.reshape(band.shape[:first + 1] + (-1,))
    return _grouped_dot(eqn, rows, box.lo_np[:, [first]] * inner, [rows.shape[-1]], w, base_out)


def _grouped_dot(eqn, delta, starts, sizes, w, base_out):
    """base_out + delta @ W rows [starts, starts + sizes) per position; positions sharing
    starts share one weight slice. delta: (P, *box); starts: (P, contracting dims), static."""
    (l_con, r_con), _ = eqn.params["dimension_numbers"]
    groups, inverse = np.unique(starts, axis=0, return_inverse=True)
    if len(groups) > 64:  # too many weight slices for one program; full products instead
        return None
    members = [np.flatnonzero(inverse.ravel() == g) for g in range(len(groups))]

    def w_slice(g):
        start, stop = [0] * w.ndim, list(w.shape)
        for rd, s, n in zip(r_con, groups[g], sizes):
            start[rd], stop[rd] = int(s), int(s) + n
        return lax.slice(w, start, stop)

    dot = lambda d, w_g: eqn.primitive.bind(d, w_g, **eqn.params)  # noqa: E731
    in_order = np.array_equal(np.concatenate(members), np.arange(len(inverse)))
    parts = []
    for g, idx in enumerate(members):
        d_g = delta[idx[0]:idx[-1] + 1] if np.all(np.diff(idx) == 1) else delta[idx]
        parts.append(jax.vmap(lambda d, w_g=w_slice(g): dot(d, w_g))(d_g))
    d_out = jnp.concatenate(parts)
    if not in_order:
        d_out = d_out[np.argsort(np.concatenate(members))]
    return Full(base_out + d_out.astype(base_out.dtype))


_RULES = {"conv_general_dilated": _conv, "dot_general": _dot, "reshape": _reshape, "transpose": _transpose,
          "reduce_sum": _reduce_sum, **{k: _pool for k in _POOL_INIT}}


def _eval(jaxpr, consts, args):
    """Interpret jaxpr on (base value, change) pairs; returns the outputs' pairs."""
    env = {}
    read = lambda v: (v.val, None) if isinstance(v, jcore.Literal) else env[v]
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = (c, None)
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        base_ins, chs = [a for a, _ in ins], [c for _, c in ins]
        name = eqn.primitive.name
        if all(c is None for c in chs):
            outs = eqn.primitive.bind(*base_ins, **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
            pairs = [(o, None) for o in outs]
        elif name in _CALLS:
            inner = eqn.params[_CALLS[name]]  # a ClosedJaxpr, or a bare Jaxpr
            pairs = _eval(getattr(inner, "jaxpr", inner), getattr(inner, "consts", []), ins)
        else:
            base_out = eqn.primitive.bind(*base_ins, **eqn.params)
            rule = _RULES.get(name) or (_elementwise if name in _ELEMENTWISE else None)
            if rule is not _dot:  # only a dense layer reads a flattened box as it is
                chs = [_widen(c) if isinstance(c, Flat) else c for c in chs]
            new = None if eqn.primitive.multiple_results or rule is None else rule(
                eqn, base_ins, chs, base_out)
            if new is None:  # no rule applies: run the primitive on full values, batched
                full = [_to_full(b, c) for b, c in zip(base_ins, chs)]
                args_ = [f.vals if f is not None else b for b, f in zip(base_ins, full)]
                axes = [None if f is None else 0 for f in full]
                new = jax.vmap(lambda *a: eqn.primitive.bind(*a, **eqn.params),
                               in_axes=tuple(axes))(*args_)
                outs = base_out if eqn.primitive.multiple_results else [base_out]
                news = new if eqn.primitive.multiple_results else [new]
                pairs = [(o, Full(n)) for o, n in zip(outs, news)]
            else:
                pairs = [(base_out, new)]
        for v, pr in zip(eqn.outvars, pairs):
            env[v] = pr
    return [read(v) for v in jaxpr.outvars]


def _input_box(image, baseline, starts, window, lo_chunk, aligned):
    """The occluded image as a Box of the (1, H, W, C) input. starts: (P, 3) corners."""
    shape = np.asarray(image.shape[1:])
    size = (1,) + tuple(window)
    lo_np = np.concatenate([np.zeros((len(starts), 1), int), np.minimum(starts, shape - window)], 1)
    corner = jnp.asarray(starts, jnp.int32)[lo_chunk]
    lo = jnp.concatenate([jnp.zeros((len(lo_chunk), 1), jnp.int32),
                          jnp.minimum(corner, jnp.asarray(shape - window, jnp.int32))], 1)

    def crop(c, s):
        idx = [s[d + 1] + lax.broadcasted_iota(jnp.int32, size, d + 1) for d in range(3)]
        inside = functools.reduce(jnp.logical_and, [(i >= c[d]) & (i < c[d] + window[d])
                                                    for d, i in enumerate(idx)])
        return jnp.where(inside, lax.dynamic_slice(baseline, tuple(s), size),
                         lax.dynamic_slice(image, tuple(s), size))
    return Box(lo_np, lo, size, jax.vmap(crop)(corner, lo), aligned)


def occluded_logits(fn, params, x, baseline, starts, window, batch):
    """Logits of every (image, patch) pair, (N, P, K), by incremental inference.

    x, baseline: (N, H, W, C); starts: (P, 3) corners in [0, dim); window: (h, w, c).
    Images go one at a time; positions in chunks of `batch`, every chunk vmapped.
    """
    p = len(starts)
    leaves, treedef = jax.tree.flatten(params)
    closed = jax.make_jaxpr(lambda ls, xi: fn(jax.tree.unflatten(treedef, ls), xi))(
        leaves, x[:1])
    chunk = min(batch, p)
    n_chunks = -(-p // chunk)
    idx = jnp.minimum(jnp.arange(n_chunks * chunk), p - 1).reshape(n_chunks, chunk)

    def one_image(args):
        xi, bi = args
        xi, bi = xi[None], bi[None]

        def one_chunk(ids):
            box = _input_box(xi, bi, starts, window, ids, aligned=n_chunks * chunk == p)
            ins = [(l, None) for l in leaves] + [(xi, box)]
            (base, ch), = _eval(closed.jaxpr, closed.consts, ins)
            full = _to_full(base, ch)
            return jnp.broadcast_to(base, (chunk,) + base.shape) if full is None else full.vals
        return lax.map(one_chunk, idx).reshape(n_chunks * chunk, -1)[:p]
    return lax.map(one_image, (x, baseline))


@functools.lru_cache(maxsize=64)
def _check(fn, treedef, leaf_specs, image_shape, window):
    params = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaf_specs])
    x = jax.ShapeDtypeStruct((1,) + image_shape, jnp.float32)
    starts = np.zeros((1, 3), int)
    try:
        jax.eval_shape(lambda pr, xi: occluded_logits(fn, pr, xi, xi, starts, window, 1), params, x)
        return "incremental"
    except Exception as err:  # noqa: BLE001 - any failure means: use the exact path instead
        warnings.warn(f"occlusion(method='incremental'): this model is not supported "
                      f"({type(err).__name__}: {err}); using the exact path instead",
                      RuntimeWarning, stacklevel=3)
        return "exact"


def check_supported(fn, params, image_shape, window) -> str:
    """'incremental' if the interpreter handles fn, else 'exact' (warning once per model)."""
    leaves, treedef = jax.tree.flatten(params)
    specs = tuple((tuple(l.shape), jnp.dtype(l.dtype)) for l in leaves)
    return _check(fn, treedef, specs, tuple(image_shape), tuple(window))
