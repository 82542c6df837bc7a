"""Histograms of oriented gradients (Dalal & Triggs 2005) of (N, H, W) maps, and the HOG
similarity of two maps (Adebayo et al. 2018: the Pearson correlation of their HOGs).

`hog` is skimage.feature.hog's definition with its defaults except the cell size:
gradients by central differences (0 on the border rows/columns), unsigned orientations in
[0, 180) hard-binned into `bins` equal bins, per-cell sums divided by the cell's area,
cell x cell pixels per cell (cells that do not fit are dropped), `block` x `block` cells
per block (stride one cell), each block L2-Hys normalised (clip 0.2, eps 1e-5).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.evaluate import common

_EPS = 1e-5


def _gradients(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Central differences along rows and columns, 0 on the border. (N, H, W) x2."""
    g_row = jnp.zeros_like(v).at[:, 1:-1, :].set(v[:, 2:, :] - v[:, :-2, :])
    g_col = jnp.zeros_like(v).at[:, :, 1:-1].set(v[:, :, 2:] - v[:, :, :-2])
    return g_row, g_col


def _l2_hys(block: jax.Array) -> jax.Array:
    """L2-Hys normalisation over the last three axes (cells, cells, bins)."""
    axes = (-3, -2, -1)
    out = block / jnp.sqrt((block ** 2).sum(axes, keepdims=True) + _EPS ** 2)
    out = jnp.minimum(out, 0.2)
    return out / jnp.sqrt((out ** 2).sum(axes, keepdims=True) + _EPS ** 2)


@functools.partial(jax.jit, static_argnames=("cell", "bins", "block"))
def hog(maps: jax.Array, *, cell: int = 4, bins: int = 9, block: int = 2) -> jax.Array:
    """HOG features of (N, H, W) maps -> (N, Br, Bc, block, block, bins) flattened to
    (N, D), Br = H // cell - block + 1 (skimage's order)."""
    n, h, w = maps.shape
    rows, cols = h // cell, w // cell
    if rows < block or cols < block:
        raise ValueError(f"hog needs at least block={block} cells of {cell} pixels a side; "
                         f"got maps of {h}x{w}")
    g_row, g_col = _gradients(maps.astype(jnp.float32))
    mag = jnp.hypot(g_col, g_row)
    ori = jnp.rad2deg(jnp.arctan2(g_row, g_col)) % 180
    edges = jnp.arange(bins) * (180.0 / bins)
    # The bin is the count of lower edges at or below the angle (skimage's comparisons).
    which = (ori[..., None] >= edges).sum(-1) - 1
    votes = jax.nn.one_hot(which, bins) * mag[..., None]
    votes = votes[:, :rows * cell, :cols * cell].reshape(n, rows, cell, cols, cell, bins)
    hist = votes.sum((2, 4)) / (cell * cell)  # (N, rows, cols, bins)
    br, bc = rows - block + 1, cols - block + 1
    blocks = jnp.stack([jnp.stack([hist[:, r:r + block, c:c + block] for c in range(bc)], 1)
                        for r in range(br)], 1)  # (N, br, bc, block, block, bins)
    return _l2_hys(blocks).reshape(n, -1)


@functools.partial(jax.jit, static_argnames=("cell", "bins", "block"))
def hog_similarity(a: jax.Array, b: jax.Array, *, cell: int = 4, bins: int = 9,
                   block: int = 2) -> jax.Array:
    """Pearson correlation of the HOGs of (N, H, W) maps a and b, per image -> (N,)."""
    opts = dict(cell=cell, bins=bins, block=block)
    return common.pearson(hog(a, **opts), hog(b, **opts))
