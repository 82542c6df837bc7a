"""What every metric shares: checked attributions, fills, perturbation orders, the batched
forward-pass runner, areas under curves and per-row correlations.

Conventions (the same in every metric):
- attributions are (N, H, W) (one value per pixel, applied to all of its channels) or
  (N, H, W, C) like the images; `as_map` makes both (N, H, W, Ca) with Ca in {1, C};
- metrics that order pixels use the pixel score, the map summed over its channels, and
  perturb every channel of a pixel together; ties keep raster order (a stable sort);
- every forward pass of a metric is one row of `forward_rows`: all steps of all curves of
  all images, `chunk_size` rows at a time (default: one image's rows);
- randomness comes from one key per image (`analysis.image_keys`) folded with the row, so
  an image's numbers do not depend on which other images share its batch.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks

FILLS = ("black", "white", "mean", "uniform", "blur")
SCORES = analysis.SCORES + ("correct",)


def as_map(a: jax.Array) -> jax.Array:
    """(N, H, W) or (N, H, W, C) -> (N, H, W, Ca)."""
    return a[..., None] if a.ndim == 3 else a


def check_attributions(attributions, x: jax.Array, name: str = "attributions") -> jax.Array:
    """Attributions for the checked images x (N, H, W, C) -> (N, H, W, Ca) float32.

    One clear error, before any work, for a wrong shape, a non-float dtype or NaN/inf."""
    if not hasattr(attributions, "shape") or not hasattr(attributions, "dtype"):
        attributions = np.asarray(attributions)
    shape, (n, h, w, c) = tuple(attributions.shape), x.shape
    if shape not in ((n, h, w), (n, h, w, 1), (n, h, w, c)):
        raise ValueError(f"{name} must match the images {x.shape}: shaped (N, H, W) = "
                         f"{(n, h, w)} or (N, H, W, C) = {(n, h, w, c)}; got shape {shape}")
    if not jnp.issubdtype(attributions.dtype, jnp.floating):
        raise ValueError(f"{name} must be floats; got dtype {attributions.dtype}")
    a = as_map(jnp.asarray(attributions, jnp.float32))
    if not checks.is_traced(a):
        bad = ~np.isfinite(np.asarray(a))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} contain {int(bad.sum())} NaN/inf value(s), the first at "
                             f"index {first} (n, y, x, c)")
    return a


def prepare(fn, params, images, target, attributions):
    """Checked (x (N, H, W, C), t (N,), a (N, H, W, Ca)) for a metric."""
    x, t = analysis.check_inputs(fn, params, images, target)
    return x, t, check_attributions(attributions, x)


def divides(step, total: int, name: str, what: str = "pixels per image") -> int:
    """step, an int >= 1 that divides total."""
    step = checks.positive_int(step, name)
    if total % step:
        raise ValueError(f"{name}={step} must divide the {total} {what}; divisors near it: "
                         f"{_divisors_near(total, step)}")
    return step


def _divisors_near(total: int, step: int) -> list[int]:
    divs = [d for d in range(1, total + 1) if total % d == 0]
    return sorted(divs, key=lambda d: abs(d - step))[:4]


def check_choice(value, choices, name: str):
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_number(value, name: str, low: float = 0.0, *, strict: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not (value > low if strict else value >= low):
        raise ValueError(f"{name} must be a number {'>' if strict else '>='} {low}; "
                         f"got {value!r}")
    return float(value)


def check_fill(fill, x: jax.Array, name: str = "baseline") -> tuple[str, jax.Array]:
    """A fill spec -> (kind, values). A number or an array broadcastable to the images
    (N, H, W, C) is used as given (kind "array"); a name in FILLS is computed per image:
    "black"/"white" its min/max, "mean" its mean, "uniform" U[0, 1) noise (needs a key),
    "blur" a Gaussian blur of it (`blur`)."""
    if isinstance(fill, str):
        return check_choice(fill, FILLS, name), jnp.zeros((), jnp.float32)
    arr = np.asarray(fill) if not hasattr(fill, "shape") else fill
    try:
        jnp.broadcast_shapes(arr.shape, x.shape)
    except ValueError:
        raise ValueError(f"{name} must be a number, an array broadcastable to the images "
                         f"{x.shape}, or one of {FILLS}; got shape {arr.shape}") from None
    return "array", jnp.asarray(arr, jnp.float32)


def fill_values(kind: str, values, x, keys, blur_sigma: float = 5.0) -> jax.Array:
    """The fill for every image (traced). x: (N, H, W, C), keys: (N,) -> (N, H, W, C)."""
    axes = (1, 2, 3)
    if kind == "array":
        return jnp.broadcast_to(values, x.shape)
    if kind in ("black", "white", "mean"):
        f = {"black": jnp.min, "white": jnp.max, "mean": jnp.mean}[kind]
        return jnp.broadcast_to(f(x, axis=axes, keepdims=True), x.shape)
    if kind == "uniform":
        return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 7), x.shape[1:]))(keys)
    return blur(x, blur_sigma)


def blur(x: jax.Array, sigma: float, size: int = 11) -> jax.Array:
    """Gaussian blur with zero padding (RISE's insertion start: size 11, sigma 5).
    x: (N, H, W, C) -> same."""
    r = size // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g = (g / g.sum()).astype(np.float32)
    h, w = x.shape[1:3]
    p = jnp.pad(x, ((0, 0), (r, r), (0, 0), (0, 0)))
    x = sum(g[i] * p[:, i:i + h] for i in range(size))
    p = jnp.pad(x, ((0, 0), (0, 0), (r, r), (0, 0)))
    return sum(g[i] * p[:, :, i:i + w] for i in range(size))


def grid_units(h: int, w: int, cell: int) -> tuple[np.ndarray, int]:
    """A grid of cell x cell squares: (H, W) unit id of every pixel, number of units."""
    rows, cols = np.arange(h) // cell, np.arange(w) // cell
    n_cols = -(-w // cell)
    return (rows[:, None] * n_cols + cols[None, :]).astype(np.int32), int(rows[-1] + 1) * n_cols


def unit_ranks(a: jax.Array, units: np.ndarray, n_units: int, order: str) -> jax.Array:
    """Each pixel's position in the perturbation order of its unit. a: (N, H, W, Ca) ->
    (N, H, W) int; units are ranked by their summed attribution, "morf" (most relevant
    first) or "lerf" (least relevant first), ties in unit-id order."""
    pix = a.sum(-1).reshape(a.shape[0], -1)
    ids = jnp.asarray(units.reshape(-1))
    sums = jax.vmap(lambda p: jax.ops.segment_sum(p, ids, n_units))(pix)
    order_ = jnp.argsort(-sums if order == "morf" else sums, axis=1, stable=True)
    rank = jax.vmap(lambda o: jnp.zeros(n_units, jnp.int32).at[o].set(
        jnp.arange(n_units, dtype=jnp.int32)))(order_)
    return rank[:, ids].reshape(a.shape[:3])


def score_logits(logits: jax.Array, t: jax.Array, score: str) -> jax.Array:
    """`analysis.target_score`, plus score="correct": 1.0 where argmax == target, else 0."""
    if score == "correct":
        return (jnp.argmax(logits, -1) == t).astype(jnp.float32)
    return analysis.target_score(logits, t, score)


def forward_rows(fn, params, t, make, n: int, s: int, *, score: str, chunk_size):
    """The target score of fn on make(i, k) for every image i < n and row k < s: (n, s).

    make(i, k) -> (H, W, C) one perturbed image (traced, indices are scalars). score: one
    of SCORES. chunk_size: forward passes at once (None: one image's s rows)."""
    rows = (jnp.repeat(jnp.arange(n), s), jnp.tile(jnp.arange(s), n))

    def one(pair):
        i, k = pair
        return score_logits(fn(params, make(i, k)[None]), t[i][None], score)[0]

    out = analysis.chunked(one, rows, s if chunk_size is None else chunk_size)
    return out.reshape(n, s)


def base_scores(fn, params, x, t, score: str, chunk_size) -> jax.Array:
    """The target score of every unperturbed image, (N,) (chunk_size None: all at once)."""
    n = x.shape[0]
    return forward_rows(fn, params, t, lambda i, k: x[i], n, 1, score=score,
                        chunk_size=n if chunk_size is None else chunk_size)[:, 0]


def row_keys(keys: jax.Array, s: int, salt: int = 0) -> jax.Array:
    """(N,) image keys -> (N, s) keys, one per row."""
    return jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(
        jnp.arange(s) + salt * 1_000_003))(keys)


def trapz(curve: jax.Array) -> jax.Array:
    """Trapezoid area with unit spacing along the last axis (numpy's trapz, dx=1)."""
    return (curve[..., 1:] + curve[..., :-1]).sum(-1) / 2


def normalized_auc(curve: jax.Array) -> jax.Array:
    """Trapezoid area of a curve sampled evenly on [0, 1] (S + 1 points): Petsiuk's AUC."""
    return trapz(curve) / (curve.shape[-1] - 1)


def pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation per row, (N, S) x2 -> (N,); a constant row correlates 0."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = jnp.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    return jnp.where(den > 0, (a * b).sum(-1) / jnp.where(den > 0, den, 1.0), 0.0)


def _flip_negatives(i: jax.Array) -> jax.Array:
    """int32 float bit patterns <-> keys that sort in the floats' order (NaN-free): positive
    floats' patterns already sort as integers; a negative's magnitude bits are flipped so
    larger magnitudes sort lower. Its own inverse (the sign bit is kept)."""
    return jnp.where(i < 0, i ^ jnp.int32(0x7FFFFFFF), i)


def sort_values(v: jax.Array) -> jax.Array:
    """jnp.sort(v, axis=-1) for float32 v without NaN (checked inputs have none). XLA's CPU
    sort compares floats through a total-order comparator that costs several integer
    compares; sorting the order-preserving integer keys and mapping back gives the same
    values faster. (..., S) -> (..., S) float32."""
    keys = _flip_negatives(jax.lax.bitcast_convert_type(v.astype(jnp.float32), jnp.int32))
    return jax.lax.bitcast_convert_type(_flip_negatives(jnp.sort(keys, axis=-1)), jnp.float32)


def average_ranks(v: jax.Array) -> jax.Array:
    """1-based ranks along the last axis, ties sharing their average rank (scipy's
    rankdata(method="average")). (..., S) -> (..., S) float32."""
    s = sort_values(v)
    lo = jnp.vectorize(lambda s_, v_: jnp.searchsorted(s_, v_, side="left"),
                       signature="(n),(n)->(n)")(s, v)
    hi = jnp.vectorize(lambda s_, v_: jnp.searchsorted(s_, v_, side="right"),
                       signature="(n),(n)->(n)")(s, v)
    return (lo + hi + 1).astype(jnp.float32) / 2


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation per row (average ranks for ties), (N, S) x2 -> (N,)."""
    return pearson(average_ranks(a), average_ranks(b))


def check_pixel_count(h: int, w: int, count, name: str) -> int:
    count = checks.positive_int(count, name)
    if count > h * w:
        raise ValueError(f"{name} must be at most the {h * w} pixels per image; got {count}")
    return count


def n_steps(total: int, per_step: int) -> int:
    return math.ceil(total / per_step)


def metric_keys(key, n: int, required: bool, why: str):
    """(n,) per-image keys, or None where the metric draws nothing and no key came."""
    if key is None:
        if required:
            raise ValueError(f"key is required ({why}): pass key=jax.random.key(seed)")
        return None
    return analysis.image_keys(key, n)
