"""Incremental occlusion's rule table on `jaxviz.core.interpret` (see `incremental`).

Values are (base, change) pairs: the base forward pass's array and its change (`boxes`).
Every rule runs the primitive on the base values once, then computes the change: a conv or
pooling spreads a box to a slightly larger box of its output, elementwise ops keep it, a
reshape splits or merges its axes (a flatten keeps it as a `Flat` until a dense layer reads
it), a dense layer adds delta @ W[box rows] to the base output. When a rule does not apply
(or a primitive has none: `default`), the primitive runs on Full values, vmapped over
positions: correct, no saving.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxviz.core import interpret
from jaxviz.occlusion.boxes import (Box, Flat, Full, axis_groups, place, region, to_full,
                                    union, vslice, widen)

_ELEMENTWISE = set("""abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp
convert_element_type copy cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag
integer_pow is_finite le log log1p logistic lt max min mul ne neg nextafter not or pow real
reduce_precision rem round rsqrt select_n sign sin sinh sqrt square sub tan tanh xor""".split())
_POOL_INIT = {"reduce_window_max": -np.inf, "reduce_window_min": np.inf, "reduce_window_sum": 0.0}


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
    vals = region(base_p, box, r_lo_np, r_lo, tuple(r_size), shift)
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
    lo_np, lo, size = union(boxes, shape)
    args, axes = [], []
    for b, c in zip(base_ins, chs):
        if c is not None:
            args.append(region(b, c, lo_np, lo, size)), axes.append(0)
        elif b.ndim == 0:
            args.append(b), axes.append(None)
        else:  # broadcasting operand: slice along its full-size axes only
            keep = np.array([n == m for n, m in zip(b.shape, shape)])
            sz = tuple(int(s) if k else 1 for s, k in zip(size, keep))
            args.append(vslice(b, jnp.where(jnp.asarray(keep), lo, 0), sz)), axes.append(0)
    crop = jax.vmap(lambda *a: eqn.primitive.bind(*a, **eqn.params), in_axes=tuple(axes))(*args)
    return Box(lo_np, lo, size, crop, all(b.aligned for b in boxes))


def _reshape(eqn, base_ins, chs, base_out):
    box, base = chs[0], base_ins[0]
    if not isinstance(box, Box) or eqn.params.get("dimensions") is not None:
        return None
    found = axis_groups(base.shape, base_out.shape)
    if found is None:
        return None
    groups = found[0]
    *kept, (last_in, last_out) = groups
    if (all(len(gi) == 1 and len(gj) == 1 for gi, gj in kept) and len(last_out) == 1
            and last_out[0] == base_out.ndim - 1 and len(last_in) > 1
            and any(box.size[d] < base.shape[d] for d in last_in[1:])):
        return Flat(box, base, tuple(base_out.shape))
    return widen(box, base, tuple(base_out.shape), groups)


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
    diff = (box.crop - vslice(base_ins[0], box.lo, box.size)).sum(tuple(a + 1 for a in axes))
    size = tuple(box.size[d] for d in keep)
    lo_np, lo = box.lo_np[:, keep], box.lo[:, keep]
    return Box(lo_np, lo, size, vslice(base_out, lo, size) + diff.astype(base_out.dtype),
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
        box = widen(box)
    if (not isinstance(box, Box) or not box.aligned
            or any(box.size[d] != lhs.shape[d] for d in range(lhs.ndim) if d not in l_con)):
        return None
    delta = box.crop - vslice(lhs, box.lo, box.size)
    return _grouped_dot(eqn, delta, box.lo_np[:, list(l_con)],
                        [box.size[d] for d in l_con], w, base_out)


def _dot_flat(eqn, flat, w, base_out):
    """Dense layer on a flattened box: the box's delta goes into a band (the box's extent
    along the first merged axis it does not cover whole, the later merged axes whole), so
    the weight rows of each band are one slice, without first gathering the band's base
    values. Merged axes before the band that the box covers whole (the channels of a
    channel-first (C, H, W) flatten) become a contracting axis of their own, over W's rows
    seen as (their size, the rest)."""
    box, src = flat.box, flat.base
    first = len(flat.out_shape) - 1  # merged axes of src start here (kept axes are 1:1)
    if any(box.size[d] != src.shape[d] for d in range(first)):
        return None
    band = first
    while band < src.ndim - 1 and box.size[band] == src.shape[band]:
        band += 1
    delta = box.crop - vslice(src, box.lo, box.size)
    band_size = tuple(box.size[:band + 1]) + tuple(src.shape[band + 1:])
    offset = box.lo.at[:, :band + 1].set(0)  # the box's place inside its band
    rows = place(jnp.zeros((delta.shape[0],) + band_size, delta.dtype), delta, offset)
    inner = math.prod(src.shape[band + 1:])
    lead = math.prod(src.shape[first:band])
    rows = rows.reshape(rows.shape[:first + 1] + (lead, -1))
    starts = box.lo_np[:, [band]] * inner
    if lead == 1:
        return _grouped_dot(eqn, rows.reshape(rows.shape[:-2] + (-1,)), starts,
                            [rows.shape[-1]], w, base_out)
    (_, (rd,)), batch = eqn.params["dimension_numbers"]
    w = w.reshape(w.shape[:rd] + (lead, -1) + w.shape[rd + 1:])
    numbers = (((first, first + 1), (rd, rd + 1)), batch)
    return _grouped_dot(eqn, rows, np.concatenate([np.zeros_like(starts), starts], 1),
                        [lead, rows.shape[-1]], w, base_out, numbers)


def _grouped_dot(eqn, delta, starts, sizes, w, base_out, numbers=None):
    """base_out + delta @ W rows [starts, starts + sizes) per position; positions sharing
    starts share one weight slice. delta: (P, *box); starts: (P, contracting dims), static;
    numbers: dimension numbers in place of the eqn's (delta and w reshaped to fit them)."""
    params = eqn.params if numbers is None else {**eqn.params, "dimension_numbers": numbers}
    (l_con, r_con), _ = params["dimension_numbers"]
    groups, inverse = np.unique(starts, axis=0, return_inverse=True)
    if len(groups) > 64:  # too many weight slices for one program; full products instead
        return None
    members = [np.flatnonzero(inverse.ravel() == g) for g in range(len(groups))]

    def w_slice(g):
        start, stop = [0] * w.ndim, list(w.shape)
        for rd, s, n in zip(r_con, groups[g], sizes):
            start[rd], stop[rd] = int(s), int(s) + n
        return lax.slice(w, start, stop)

    dot = lambda d, w_g: eqn.primitive.bind(d, w_g, **params)  # noqa: E731
    in_order = np.array_equal(np.concatenate(members), np.arange(len(inverse)))
    parts = []
    for g, idx in enumerate(members):
        d_g = delta[idx[0]:idx[-1] + 1] if np.all(np.diff(idx) == 1) else delta[idx]
        parts.append(jax.vmap(lambda d, w_g=w_slice(g): dot(d, w_g))(d_g))
    d_out = jnp.concatenate(parts)
    if not in_order:
        d_out = d_out[np.argsort(np.concatenate(members))]
    return Full(base_out + d_out.astype(base_out.dtype))


def _on_pairs(rule, eqn, ins):
    """The interpreter rule on (base, change) pairs made from a box rule
    `rule(eqn, base_ins, changes, base_out) -> change or None` (None: no rule)."""
    base_ins, chs = [b for b, _ in ins], [c for _, c in ins]
    base_outs = interpret.bind(eqn, base_ins)
    if all(c is None for c in chs):
        return [(o, None) for o in base_outs]
    if rule is not _dot:  # only a dense layer reads a flattened box as it is
        chs = [widen(c) if isinstance(c, Flat) else c for c in chs]
    new = None if rule is None or eqn.primitive.multiple_results else rule(
        eqn, base_ins, chs, base_outs[0])
    if new is None:  # no rule applies: run the primitive on full values, batched
        full = [to_full(b, c) for b, c in zip(base_ins, chs)]
        args = [f.vals if f is not None else b for b, f in zip(base_ins, full)]
        axes = tuple(None if f is None else 0 for f in full)
        news = jax.vmap(lambda *a: interpret.bind(eqn, a), in_axes=axes)(*args)
        return [(o, Full(n)) for o, n in zip(base_outs, news)]
    return [(base_outs[0], new)]


_BOX_RULES = {"conv_general_dilated": _conv, "dot_general": _dot, "reshape": _reshape,
              "transpose": _transpose, "reduce_sum": _reduce_sum,
              **{k: _pool for k in _POOL_INIT}, **{k: _elementwise for k in _ELEMENTWISE}}
RULES = {name: functools.partial(_on_pairs, rule) for name, rule in _BOX_RULES.items()}
default = functools.partial(_on_pairs, None)  # any other primitive: unchanged, or Full


def lift(value):
    """A literal or constant: unchanged."""
    return value, None
