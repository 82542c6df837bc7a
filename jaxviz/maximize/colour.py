"""Lucid's decorrelated colour space: optimise in a basis where the data's colour channels
are uncorrelated, then map back with the square root of their covariance.

    basis = colour_sqrt(images)      # (C, C) from the user's data set (N, H, W, C)
    basis = IMAGENET                 # Lucid's published ImageNet matrix (RGB)
    rgb = decorrelate(z, basis)      # z (..., C) -> z @ normalized(basis).T

The square root is Lucid's SVD form, U sqrt(S) for the covariance U S U^T (its columns are
the principal colour directions scaled by their standard deviations), normalised so that
the longest column has length 1, as Lucid and Lucent do before use.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# Lucid's svd-sqrt of ImageNet's RGB covariance (lucid/optvis/param/color.py; Lucent uses the
# same numbers). Rows are R, G, B; columns the principal directions, brightest first.
IMAGENET = ((0.26, 0.09, 0.02),
            (0.27, 0.00, -0.05),
            (0.27, -0.09, 0.03))


def colour_sqrt(images, *, max_pixels: int = 1_000_000) -> tuple:
    """The square root U sqrt(S) of the images' colour covariance U S U^T, as a (C, C) tuple.

    images: (N, H, W, C) or (P, C) pixels, any range (the result is normalised before use).
    max_pixels: at most this many pixels are used, an even subsample (deterministic).
    Returns: (C, C) nested tuple (hashable, so an ascent using it compiles once); each
    column's sign is chosen so its first entry is >= 0 (Lucid's ImageNet matrix follows it).
    """
    x = np.asarray(images, np.float64)
    if x.ndim not in (2, 4) or x.shape[-1] < 1:
        raise ValueError(f"images must be (N, H, W, C) or (P, C); got shape {x.shape}")
    x = x.reshape(-1, x.shape[-1])
    if len(x) < 2:
        raise ValueError(f"images: need at least 2 pixels for a covariance; got {len(x)}")
    x = x[:: max(1, len(x) // max_pixels)]
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN/inf")
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    u, s, _ = np.linalg.svd(cov)
    root = u * np.sqrt(np.maximum(s, 0.0))[None, :]
    root = root * np.where(root[0] < 0, -1.0, 1.0)[None, :]
    if not np.any(root):
        raise ValueError("images: every pixel has the same colour; the covariance is zero")
    return tuple(tuple(float(v) for v in row) for row in root)


def normalized(basis) -> np.ndarray:
    """basis / (its longest column's length): (C, C) float32, Lucid's normalisation."""
    m = np.asarray(basis, np.float32)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"colour basis must be a square (C, C) matrix; got shape {m.shape}")
    return m / np.max(np.linalg.norm(m, axis=0))


def identity(channels: int) -> tuple:
    """No decorrelation: the (C, C) identity."""
    return tuple(tuple(float(i == j) for j in range(channels)) for i in range(channels))


def default_basis(channels: int) -> tuple:
    """ImageNet's matrix for 3 channels, the identity otherwise (one channel has nothing to
    decorrelate; other channel counts need colour_sqrt of their own data)."""
    return IMAGENET if channels == 3 else identity(channels)


def decorrelate(z, basis):
    """Decorrelated colours -> the data's colours. z: (..., C) -> (..., C)."""
    m = jnp.asarray(normalized(basis))
    if z.shape[-1] != m.shape[0]:
        raise ValueError(f"colour basis is {m.shape[0]}x{m.shape[0]} but the image has "
                         f"{z.shape[-1]} channels")
    return z @ m.T
