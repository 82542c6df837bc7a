"""Faster backward passes on XLA CPU for any `fn(params, x)`, with unchanged values and gradients.

    loss_fn = lambda params, x, y: xent(fastgrad.fast(apply_fn)(params, x), y)
    grads = jax.grad(loss_fn)(params, x, y)        # same numbers as without `fast`

`fast(fn)` traces `fn` to a jaxpr and re-evaluates it, swapping primitives whose
automatic derivative is badly shaped for XLA CPU for `jax.custom_jvp`/`custom_vjp`
versions with the same values and the same gradients (to float rounding):

- `reduce_window_max` whose windows do not overlap (window == stride, no padding or
  dilation), i.e. the usual 2x2/2 max-pool: the forward is unchanged; its derivative
  goes through a reshaped view, so the backward is an elementwise "first maximum of each
  window" mask instead of a `select_and_scatter` that XLA CPU runs ~20x slower. Ties go
  to the first element in row-major window order, exactly as `select_and_scatter` does.
- `conv_general_dilated` (no grouping, no input dilation), under differentiation only:
  an unpadded convolution with >= 16 input channels gets one extra row of zero padding
  (its output sliced back), which moves XLA CPU's YNNPACK convolution off a ~2.5x slower
  path for both the materialized output and the weight gradient; and the input gradient
  is a transposed convolution whose kernel is materialized in the canonical layout
  behind an optimization barrier, which keeps it fast inside `lax.scan`/`while` bodies
  (where JAX's own form runs 2-4x slower). Forward-only calls use the native convolution.
  Forward-mode differentiation (`jax.jvp`, `jacfwd`) of a rewritten conv raises; use
  `conv=False` or `enabled=False` there.

Everything else (overlapping pools, custom_jvp functions such as relu, the bodies of
scans inside `fn`) is evaluated as traced, so any model keeps working. Nested `jit`s are
inlined.
By default it is on where the default backend is the CPU and off elsewhere (GPU
backward passes are already fast, and there the rewrite costs 10-20%). Force it with
`enabled=True/False` or the environment variable `JAXVIZ_FASTGRAD=1/0` (read at trace time). See docs/xla_cpu_backward.md for the measurements behind each rule.
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

from jaxviz.core import xla_cpu

ENV_VAR = "JAXVIZ_FASTGRAD"
_prims = jcore.primitives


def enabled_by_default() -> bool:
    """JAXVIZ_FASTGRAD=1/0 forces the rewrite on/off; unset (or "auto"), it is on for the CPU
    backend only: on a GPU the native rules are already fast and the rewrite measured
    10-20% slower (H200, jax 0.11.2; docs/device/bench_gpu.log)."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower()
    if value in ("", "auto"):
        return jax.default_backend() == "cpu"
    return value not in ("0", "false", "off", "no")


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
        return (f"fastgrad.fast({self.fn!r}, enabled={self.enabled}, pool={self.pool}, "
                f"conv={self.conv})")

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
    enabled: True/False forces the rewrite on/off; None (default) follows JAXVIZ_FASTGRAD,
        else on for the CPU backend only.
    pool, conv: turn single rewrites off (for measuring and debugging).
    Returns a callable with fn's signature; attribute access falls through to fn.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable fn(params, x); got {type(fn).__name__}")
    if isinstance(fn, _Fast):
        fn = fn.fn  # the newest options win
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
        if not eqn.primitive.multiple_results:
            outs = [outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


# ---- max-pool with non-overlapping windows -------------------------------------------

def _pool_rule(params, invals):
    (x,) = invals
    win, strides = tuple(params["window_dimensions"]), tuple(params["window_strides"])
    if (win != strides or any(tuple(p) != (0, 0) for p in params["padding"])
            or any(d != 1 for d in params["base_dilation"])
            or any(d != 1 for d in params["window_dilation"])
            or not jnp.issubdtype(x.dtype, jnp.floating) or all(w == 1 for w in win)):
        return None
    # VALID pooling drops the ragged edge; crop it so the windows tile the input exactly.
    kept = tuple((d // w) * w for d, w in zip(x.shape, win))
    if kept != x.shape:
        x = lax.slice(x, (0,) * x.ndim, kept)  # its VJP pads the gradient back with zeros
    return _block_max(x, win)


def _blocks(x, win):
    """(d0, d1, ...) -> (d0/w0, w0, d1/w1, w1, ...)."""
    return x.reshape(tuple(s for d, w in zip(x.shape, win) for s in (d // w, w)))


# The primal stays XLA's reduce_window: fused after a convolution it is the fast form.
@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _block_max(x, win):
    return _prims.reduce_window_max_p.bind(
        x, window_dimensions=win, window_strides=win, padding=((0, 0),) * x.ndim,
        base_dilation=(1,) * x.ndim, window_dilation=(1,) * x.ndim)


def _windows_last(x, win):
    """(d0, d1, ...) -> (d0/w0, d1/w1, ..., w0*w1*...), windows in row-major order."""
    n = x.ndim
    xb = _blocks(x, win)
    perm = tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2))
    return xb.transpose(perm).reshape(xb.shape[0:2 * n:2] + (math.prod(win),))


@_block_max.defjvp
def _block_max_jvp(win, primals, tangents):
    (x,), (t,) = primals, tangents
    xw = _windows_last(x, win)
    # The tangent flows from the first maximum of each window (row-major), as in XLA's
    # select_and_scatter; written as a masked sum, its transpose is elementwise.
    first = jnp.argmax(xw, axis=-1)
    mask = first[..., None] == lax.broadcasted_iota(first.dtype, xw.shape, x.ndim)
    tw = _windows_last(t, win)
    return jnp.max(xw, axis=-1), jnp.sum(jnp.where(mask, tw, jnp.zeros((), tw.dtype)), axis=-1)


# ---- convolution: padded when unpadded; input gradient with a materialized kernel -----

MIN_CONV_CHANNELS = 16  # below this the padded form measured no faster (see the benchmark)


def _conv_rule(params, invals):
    lhs, rhs = invals
    pad = params["padding"]
    if (not isinstance(pad, (tuple, list)) or not 1 <= len(pad) <= 3
            or params["feature_group_count"] != 1 or params["batch_group_count"] != 1
            or any(d != 1 for d in params["lhs_dilation"])
            or params["preferred_element_type"] is not None):
        return None
    unpadded = all(tuple(p) == (0, 0) for p in pad)
    wide = lhs.shape[params["dimension_numbers"].lhs_spec[1]] >= MIN_CONV_CHANNELS
    # The padding dodges a slow YNNPACK path; a program compiled without YNNPACK has none.
    pad_it = unpadded and wide and not xla_cpu.ynn_off_while_tracing()
    return _conv(lhs, rhs, (tuple(sorted(params.items())), pad_it))


def _native_conv(lhs, rhs, key):
    return _prims.conv_general_dilated_p.bind(lhs, rhs, **dict(key[0]))


def _padded_conv(lhs, rhs, key):
    """The same values as `_native_conv`, through XLA CPU's faster padded-convolution path.

    XLA CPU's (YNNPACK) convolution takes a ~2.5x slower path when no padding is given,
    for the materialized output and for the weight gradient. Zero rows added at the high
    end of the first spatial axis leave the first `n_out` output rows unchanged.
    """
    params, pad_it = dict(key[0]), key[1]
    if not pad_it:
        return _native_conv(lhs, rhs, key)
    dn = params["dimension_numbers"]
    stride = params["window_strides"][0]
    p = dict(params, padding=((0, stride), *params["padding"][1:]))
    out = _prims.conv_general_dilated_p.bind(lhs, rhs, **p)
    n_out = _conv_out_len(lhs.shape[dn.lhs_spec[2]], rhs.shape[dn.rhs_spec[2]], stride,
                          params["lhs_dilation"][0], params["rhs_dilation"][0])
    return lax.slice_in_dim(out, 0, n_out, axis=dn.out_spec[2])


# Forward-only evaluation keeps the native form: XLA fuses it with a following reduction
# (pool, sum) into its fastest kernel; only differentiated calls take the padded form.
# A custom_vjp (not custom_jvp) because the input gradient must be spelled out: see
# _input_grad. Forward-mode differentiation of a rewritten conv therefore raises.
@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(lhs, rhs, key):
    return _native_conv(lhs, rhs, key)


def _conv_fwd(lhs, rhs, key):
    return _padded_conv(lhs, rhs, key), (lhs, rhs)


def _conv_bwd(key, res, g):
    lhs, rhs = res
    _, vjp_rhs = jax.vjp(lambda b: _padded_conv(lhs, b, key), rhs)
    return _input_grad(lhs.shape, rhs, g, dict(key[0])), vjp_rhs(g)[0]


def _input_grad(lhs_shape, rhs, g, p):
    """dL/dlhs as a transposed convolution with a materialized, channels-last kernel.

    JAX's own rule hands XLA a reversed kernel with input/output features swapped in the
    dimension numbers. At top level XLA copies it into the canonical layout; inside a
    while/scan body it folds the swap into the convolution instead, which then runs on a
    generic path 2-4x slower. The optimization barrier keeps the copy.
    """
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    n = len(lhs_spec) - 2
    go = g.transpose((out_spec[0], *out_spec[2:], out_spec[1]))             # (N, *So, O)
    w = rhs.transpose((*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))           # (*K, I, O)
    w = lax.optimization_barrier(jnp.flip(w, tuple(range(n))).swapaxes(-1, -2))  # (*K, O, I)
    in_sp = tuple(lhs_shape[d] for d in lhs_spec[2:])
    pads = []
    for i in range(n):
        k_eff = (w.shape[i] - 1) * p["rhs_dilation"][i] + 1
        out_eff = (go.shape[1 + i] - 1) * p["window_strides"][i] + 1
        lo = k_eff - 1 - p["padding"][i][0]
        pads.append((lo, in_sp[i] + k_eff - 1 - out_eff - lo))
    spatial = "".join("DHW"[3 - n:]) if n <= 3 else None
    dn = lax.conv_dimension_numbers(go.shape, w.shape,
                                    (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    dx = lax.conv_general_dilated(go, w, (1,) * n, pads, lhs_dilation=p["window_strides"],
                                  rhs_dilation=p["rhs_dilation"], dimension_numbers=dn)
    # back to the input's own layout: lhs_spec = (N dim, C dim, spatial dims...)
    src_of = {lhs_spec[0]: 0, lhs_spec[1]: n + 1, **{d: 1 + i for i, d in enumerate(lhs_spec[2:])}}
    return dx.transpose(tuple(src_of[d] for d in range(n + 2)))


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_out_len(n, k, stride, lhs_dil, rhs_dil):
    n_eff = (n - 1) * lhs_dil + 1
    k_eff = (k - 1) * rhs_dil + 1
    return (n_eff - k_eff) // stride + 1
