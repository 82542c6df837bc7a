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
scans inside `fn`) is evaluated as traced, so any model keeps working. The rules are a
table on `jaxviz.core.interpret`, which inlines nested `jit`s and `jax.checkpoint`s and keeps
custom derivatives.
This module has no policy: `fast` rewrites when asked to. Whether jaxviz's analyses use
it (on the CPU backend by default, JAXVIZ_FASTGRAD) and whether convolutions get their
padding (not in programs compiled with YNNPACK fusions off) is decided in
`jaxviz.core.compile`, whose `fast_model` passes both explicitly. See
docs/xla_cpu_backward.md for the measurements behind each rule.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jcore

from jaxviz.core import interpret


_prims = jcore.primitives


class _Fast:
    """`fn` with rewritten VJPs. Equal (and hash-equal) for equal (fn, options), so
    `jax.jit(..., static_argnames="fn")` does not retrace when `fast(fn)` is rebuilt."""

    def __init__(self, fn: Callable, enabled: bool, pool: bool, conv: bool, pad_convs: bool):
        self.fn, self.enabled, self.pool, self.conv = fn, enabled, pool, conv
        self.pad_convs = pad_convs
        self.__wrapped__ = fn
        self.__name__ = f"fast({getattr(fn, '__name__', type(fn).__name__)})"

    def _key(self):
        return (self.fn, self.enabled, self.pool, self.conv, self.pad_convs)

    def __eq__(self, other):
        return isinstance(other, _Fast) and self._key() == other._key()

    def __hash__(self):
        return hash((_Fast,) + self._key())

    def __repr__(self):
        return (f"fastgrad.fast({self.fn!r}, enabled={self.enabled}, pool={self.pool}, "
                f"conv={self.conv}, pad_convs={self.pad_convs})")

    def __getattr__(self, name):  # keep Probe attributes (params, run, layer_shapes) reachable
        if name == "fn":
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __call__(self, *args, **kwargs):
        if not self.enabled or not (self.pool or self.conv):
            return self.fn(*args, **kwargs)
        rules = {}
        if self.pool:
            rules["reduce_window_max"] = partial(_on_eqn, _pool_rule)
        if self.conv:
            rules["conv_general_dilated"] = partial(_on_eqn, _conv_rule, pad=self.pad_convs)
        # A `with_relu_rule(fn)` is itself a rewrite: its rules join these, one pass in all.
        return interpret.rewrite(self.fn, rules)(*args, **kwargs)


def fast(fn: Callable, *, enabled: bool = True, pool: bool = True, conv: bool = True,
         pad_convs: bool = True) -> Callable:
    """`fn` with the same values and gradients but XLA-CPU-friendly backward passes.

    fn: any function of pytrees of arrays (an apply_fn, a Probe, a loss).
    enabled: False returns fn's own behaviour (jaxviz's analyses get this flag from
        `jaxviz.core.compile.fast_model`, which follows the compile policy).
    pool, conv: turn single rewrites off (for measuring and debugging).
    pad_convs: give unpadded wide convolutions their extra zero row under differentiation;
        pass False for programs compiled with YNNPACK fusions off, which have no slow
        unpadded path to dodge.
    Returns a callable with fn's signature; attribute access falls through to fn.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable fn(params, x); got {type(fn).__name__}")
    if isinstance(fn, _Fast):
        fn = fn.fn  # the newest options win
    return _Fast(fn, bool(enabled), bool(pool), bool(conv), bool(pad_convs))


transform = fast


def _on_eqn(rule, eqn, invals, **options):
    """rule(params, invals, **options) -> one value or None, as an interpreter rule."""
    out = rule(eqn.params, invals, **options)
    return None if out is None else [out]


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


def _conv_rule(params, invals, *, pad: bool = True):
    lhs, rhs = invals
    padding = params["padding"]
    if (not isinstance(padding, (tuple, list)) or not 1 <= len(padding) <= 3
            or params["feature_group_count"] != 1 or params["batch_group_count"] != 1
            or any(d != 1 for d in params["lhs_dilation"])
            or params["preferred_element_type"] is not None):
        return None
    unpadded = all(tuple(p) == (0, 0) for p in padding)
    wide = lhs.shape[params["dimension_numbers"].lhs_spec[1]] >= MIN_CONV_CHANNELS
    # The padding dodges a slow YNNPACK path; the caller says whether the program has one.
    pad_it = unpadded and wide and pad
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
