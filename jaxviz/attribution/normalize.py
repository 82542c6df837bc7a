"""Display helpers for attribution maps. None divides by zero: an all-zero map stays zero.

Every function is per image (over all axes but the first) and works on (N, H, W) or
(N, H, W, C) maps; the raw maps from the methods are never changed in place.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

REDUCTIONS = ("max", "sum", "mean", "abs_max", "l2")


def _safe_div(a, d):
    return jnp.where(d > 0, a / jnp.where(d > 0, d, 1), 0)


def _axes(a):
    return tuple(range(1, a.ndim))


def reduce_channels(a: jax.Array, how: str = "max") -> jax.Array:
    """(N, H, W, C) -> (N, H, W): "max" (keras-vis), "sum", "mean", "abs_max", "l2"."""
    if how not in REDUCTIONS:
        raise ValueError(f"how must be one of {REDUCTIONS}; got {how!r}")
    if a.ndim != 4:
        raise ValueError(f"maps must be (N, H, W, C); got shape {tuple(a.shape)}")
    if how == "abs_max":
        return jnp.abs(a).max(-1)
    if how == "l2":
        return jnp.sqrt((a ** 2).sum(-1))
    return {"max": a.max, "sum": a.sum, "mean": a.mean}[how](axis=-1)


def unit_range(a: jax.Array) -> jax.Array:
    """Min-max scale each map to [0, 1]; a constant map becomes zeros."""
    lo = a.min(axis=_axes(a), keepdims=True)
    hi = a.max(axis=_axes(a), keepdims=True)
    return _safe_div(a - lo, hi - lo)


def max_abs(a: jax.Array) -> jax.Array:
    """Divide each map by its largest |value|, into [-1, 1]; sign and zero are kept."""
    return _safe_div(a, jnp.abs(a).max(axis=_axes(a), keepdims=True))


def clip_percentile(a: jax.Array, q: float = 99.0) -> jax.Array:
    """|a| divided by its q-th percentile per map and clipped to [0, 1] (as in Captum's
    visualisation), so a few extreme pixels do not wash out the rest."""
    if not 0 < q <= 100:
        raise ValueError(f"q must lie in (0, 100]; got {q!r}")
    m = jnp.abs(a)
    p = jnp.percentile(m.reshape(m.shape[0], -1), q, axis=1).reshape((-1,) + (1,) * (a.ndim - 1))
    return jnp.clip(_safe_div(m, p), 0, 1)
