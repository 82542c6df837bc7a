"""Faster backward passes on XLA CPU for any `fn(params, x)`, with unchanged values and gradients.

    loss_fn = lambda params, x, y: xent(fastgrad.fast(apply_fn)(params, x), y)
    grads = jax.grad(loss_fn)(params, x, y)        # same numbers as without `fast`

`fast(fn)` traces `fn` to a jaxpr and re-evaluates it, swapping primitives whose
automatic VJP is badly shaped for XLA CPU for `jax.custom_vjp` versions with the same
forward values and the same gradients (to float rounding):

- `reduce_window_max` whose windows do not overlap (window == stride, no padding or
  dilation), i.e. the usual 2x2/2 max-pool: computed as reshape-then-max. Its backward is
  an elementwise "first maximum of each window" mask, where the native backward is a
  `select_and_scatter` that XLA CPU runs several times slower. Ties go to the first
  element in row-major window order, exactly as `select_and_scatter` does.
- `conv_general_dilated` (no grouping, no input dilation): forward unchanged; the weight
  gradient is one sum of shifted-slice matmuls instead of XLA's native "weight-gradient
  convolution", and the input gradient is the native transposed convolution.

Everything else (overlapping pools, custom_jvp functions such as relu, scan bodies) is
evaluated as traced, so any model keeps working. Nested `jit`s are inlined.
Switch it off with `enabled=False` or the environment variable `JAXVIZ_FASTGRAD=0`
(read at trace time). See docs/xla_cpu_backward.md for the measurements behind each rule.
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jcore

ENV_VAR = "JAXVIZ_FASTGRAD"
_prims = jcore.primitives


def enabled_by_default() -> bool:
    """False when the environment variable JAXVIZ_FASTGRAD is 0/false/off/no."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "off", "no")


class _Fast:
    """`fn` with rewritten VJPs. Equal (and hash-equal) for equal (fn, options), so
    `jax.jit(..., static_argnames="fn")` does not retrace when `fast(fn)` is rebuilt."""

    def __init__(self, fn: Callable, enabled: bool | None, pool: bool, conv: bool):
        self.fn, self.enabled, self.pool, self.conv = fn, enabled, pool, conv
        self.__wrapped__ = fn
        self.__name__ = f"fast({getattr(fn, '__name__', type(fn).__name__)})"

    def _key(self):
        return (self.fn, self.enabled, self.pool, self.conv)

    def __eq__(self, other):
        return isinstance(other, _Fast) and self._key() == other._key()

    def __hash__(self):
        return hash((_Fast,) + self._key())

    def __repr__(self):
        return f"fastgrad.fast({self.fn!r}, enabled={self.enabled}, pool={self.pool}, conv={self.conv})"

    def __getattr__(self, name):  # keep Probe attributes (params, run, layer_shapes) reachable
        if name == "fn":
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __call__(self, *args, **kwargs):
        on = enabled_by_default() if self.enabled is None else self.enabled
        if not on or not (self.pool or self.conv):
            return self.fn(*args, **kwargs)
        flat, in_tree = jax.tree.flatten((args, kwargs))

        def flat_fn(*leaves):
            a, k = jax.tree.unflatten(in_tree, leaves)
            return self.fn(*a, **k)

        closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*flat)
        rules = {}
        if self.pool:
            rules[_prims.reduce_window_max_p] = _pool_rule
        if self.conv:
            rules[_prims.conv_general_dilated_p] = _conv_rule
        outs = _eval(closed.jaxpr, closed.consts, flat, rules)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


def fast(fn: Callable, *, enabled: bool | None = None, pool: bool = True,
         conv: bool = True) -> Callable:
    """`fn` with the same values and gradients but XLA-CPU-friendly backward passes.

    fn: any function of pytrees of arrays (an apply_fn, a Probe, a loss).
    enabled: True/False forces the rewrite on/off; None (default) follows JAXVIZ_FASTGRAD.
    pool, conv: turn single rewrites off (for measuring and debugging).
    Returns a callable with fn's signature; attribute access falls through to fn.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable fn(params, x); got {type(fn).__name__}")
    if isinstance(fn, _Fast):
        return fn
    return _Fast(fn, enabled, bool(pool), bool(conv))


transform = fast


def _eval(jaxpr, consts, args, rules):
    """Evaluate a jaxpr under the current trace, applying `rules` and inlining jits."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, a in itertools.chain(zip(jaxpr.constvars, consts), zip(jaxpr.invars, args)):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        outs = None
        if eqn.primitive is _prims.jit_p:
            sub = eqn.params["jaxpr"]
            outs = _eval(sub.jaxpr, sub.consts, invals, rules)
        elif eqn.primitive in rules:
            outs = rules[eqn.primitive](eqn.params, invals)
        if outs is None:
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
        if not eqn.primitive.multiple_results and eqn.primitive is not _prims.jit_p:
            outs = [outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


# ---- max-pool with non-overlapping windows -------------------------------------------

def _pool_rule(params, invals):
    (x,) = invals
    win, strides = params["window_dimensions"], params["window_strides"]
    if (tuple(win) != tuple(strides) or any(p != (0, 0) for p in params["padding"])
            or any(d != 1 for d in params["base_dilation"])
            or any(d != 1 for d in params["window_dilation"])
            or not jnp.issubdtype(x.dtype, jnp.floating) or all(w == 1 for w in win)):
        return None
    # VALID pooling drops the ragged edge; crop it so the windows tile the input exactly.
    kept = tuple((d // w) * w for d, w in zip(x.shape, win))
    if kept != x.shape:
        x = lax.slice(x, (0,) * x.ndim, kept)  # its VJP pads the gradient back with zeros
    return _block_max(x, tuple(win))


def _blocks(x, win):
    """(d0, d1, ...) -> (d0/w0, w0, d1/w1, w1, ...)."""
    return x.reshape(tuple(s for d, w in zip(x.shape, win) for s in (d // w, w)))


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _block_max(x, win):
    return _blocks(x, win).max(axis=tuple(range(1, 2 * x.ndim, 2)))


def _block_max_fwd(x, win):
    return _block_max(x, win), x


def _block_max_bwd(win, x, g):
    n = x.ndim
    xb = _blocks(x, win)
    # window axes last, flattened in row-major window order: select_and_scatter's order
    perm = tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2))
    flat = xb.transpose(perm).reshape(xb.shape[0:2 * n:2] + (math.prod(win),))
    first = jnp.argmax(flat, axis=-1)
    mask = first[..., None] == lax.broadcasted_iota(jnp.int32, flat.shape, n)
    dx = jnp.where(mask, g[..., None], jnp.zeros((), g.dtype))
    dx = dx.reshape(xb.shape[0:2 * n:2] + tuple(win)).transpose(_inverse(perm))
    return (dx.reshape(x.shape),)


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


_block_max.defvjp(_block_max_fwd, _block_max_bwd)


# ---- convolution: unpadded convolutions get one row of padding -----------------------

MIN_CONV_CHANNELS = 16  # below this the padded form measured no faster (see the benchmark)


def _conv_rule(params, invals):
    lhs, rhs = invals
    lhs_spec = params["dimension_numbers"].lhs_spec
    pad = params["padding"]
    if (not isinstance(pad, (tuple, list)) or any(tuple(p) != (0, 0) for p in pad)
            or lhs.shape[lhs_spec[1]] < MIN_CONV_CHANNELS or len(pad) == 0):
        return None
    return _conv(lhs, rhs, tuple(sorted(params.items())))


def _native_conv(lhs, rhs, key):
    return _prims.conv_general_dilated_p.bind(lhs, rhs, **dict(key))


def _padded_conv(lhs, rhs, key):
    """The same values as `_native_conv`, through XLA CPU's faster padded-convolution path.

    XLA CPU's (YNNPACK) convolution takes a ~2.5x slower path when no padding is given,
    for the materialized output and for the weight gradient. Zero rows added at the high
    end of the first spatial axis leave the first `n_out` output rows unchanged.
    """
    params = dict(key)
    dn = params["dimension_numbers"]
    stride = params["window_strides"][0]
    p = dict(params, padding=((0, stride), *params["padding"][1:]))
    out = _prims.conv_general_dilated_p.bind(lhs, rhs, **p)
    n_out = _conv_out_len(lhs.shape[dn.lhs_spec[2]], rhs.shape[dn.rhs_spec[2]], stride,
                          params["lhs_dilation"][0], params["rhs_dilation"][0])
    return lax.slice_in_dim(out, 0, n_out, axis=dn.out_spec[2])


# Forward-only evaluation keeps the native form: XLA fuses it with a following reduction
# (pool, sum) into its fastest kernel; only differentiated calls take the padded form.
@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(lhs, rhs, key):
    return _native_conv(lhs, rhs, key)


def _conv_fwd(lhs, rhs, key):
    return _padded_conv(lhs, rhs, key), (lhs, rhs)


def _conv_bwd(key, res, g):
    _, vjp = jax.vjp(lambda a, b: _padded_conv(a, b, key), *res)
    return vjp(g)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_out_len(n, k, stride, lhs_dil, rhs_dil):
    n_eff = (n - 1) * lhs_dil + 1
    k_eff = (k - 1) * rhs_dil + 1
    return (n_eff - k_eff) // stride + 1
