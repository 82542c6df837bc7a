"""Non-negative matrix factorization in JAX: A ≈ W H with W, H >= 0, jitted.

Lee and Seung's multiplicative updates for the Frobenius loss |A - W H|²,

    H <- H * (Wᵀ A) / (Wᵀ W H + eps),    W <- W * (A Hᵀ) / (W H Hᵀ + eps),

a fixed number of steps in one `lax.fori_loop`, from a seeded uniform start scaled to A's
mean (so W H starts at A's scale). Each update never increases the loss and keeps both
factors non-negative. This is the factorization DeepFeatureFactorization and CRAFT apply
to a layer's (positions, channels) activations; sklearn's `NMF(solver="mu")` is the same
algorithm.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import compile as compile_lib

EPS = 1e-10


class NMF(NamedTuple):
    """w: (n, k) >= 0; h: (k, c) >= 0; error: |A - W H|_F / |A|_F (relative, float)."""
    w: jax.Array
    h: jax.Array
    error: jax.Array


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("k", "steps"))
def _nmf(a, key, k: int, steps: int) -> NMF:
    n, c = a.shape
    scale = jnp.sqrt(jnp.maximum(a.mean(), EPS) / k)
    kw, kh = jax.random.split(key)
    w0 = jax.random.uniform(kw, (n, k), minval=0.1, maxval=1.9) * scale
    h0 = jax.random.uniform(kh, (k, c), minval=0.1, maxval=1.9) * scale

    def step(_, wh):
        w, h = wh
        h = h * (w.T @ a) / (w.T @ w @ h + EPS)
        w = w * (a @ h.T) / (w @ (h @ h.T) + EPS)
        return w, h
    w, h = jax.lax.fori_loop(0, steps, step, (w0, h0))
    err = jnp.linalg.norm(a - w @ h) / jnp.maximum(jnp.linalg.norm(a), EPS)
    return NMF(w, h, err)


def nmf(a, k: int, *, key, steps: int = 300) -> NMF:
    """Factorize a non-negative (n, c) matrix into k parts.

    Args:
      a: (n, c) float, every entry >= 0.
      k: the number of parts (1 <= k <= min(n, c)).
      key: PRNG key of the random start.
      steps: multiplicative updates.
    Returns:
      NMF(w (n, k), h (k, c), error = |A - W H|_F / |A|_F).
    """
    a = jnp.asarray(a, jnp.float32)
    if a.ndim != 2:
        raise ValueError(f"a must be a (n, c) matrix; got shape {tuple(a.shape)}")
    lowest = float(a.min())
    if lowest < 0:
        raise ValueError(f"a must be non-negative; its smallest entry is {lowest:.3g}")
    if not 1 <= int(k) <= min(a.shape):
        raise ValueError(f"k must lie in [1, {min(a.shape)}] for a {tuple(a.shape)} matrix; "
                         f"got {k!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps!r}")
    return _nmf(a, key, int(k), int(steps))


def project(a, h, *, steps: int = 100) -> jax.Array:
    """W >= 0 for new rows a (n, c) with H fixed (the same W update): (n, k)."""
    a, h = jnp.asarray(a, jnp.float32), jnp.asarray(h, jnp.float32)
    return _project(a, h, int(steps))


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("steps",))
def _project(a, h, steps):
    w0 = jnp.full((a.shape[0], h.shape[0]), jnp.sqrt(jnp.maximum(a.mean(), EPS) / h.shape[0]))
    hh, ah = h @ h.T, a @ h.T
    return jax.lax.fori_loop(0, steps, lambda _, w: w * ah / (w @ hh + EPS), w0)


def relative_error(a, w, h) -> float:
    """|A - W H|_F / |A|_F, in float64 on the host (an independent check of NMF.error)."""
    a, w, h = (np.asarray(v, np.float64) for v in (a, w, h))
    return float(np.linalg.norm(a - w @ h) / np.linalg.norm(a))
