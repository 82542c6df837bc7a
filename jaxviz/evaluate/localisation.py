"""Localisation: does the map put its relevance on the object? Scored against ground-truth
masks, with no forward pass, so the model arguments are accepted and unused.

    metric(fn, params, images, target, attributions, *, masks, **options) -> MetricResult
    images: (N, H, W, C); attributions: (N, H, W, C) or (N, H, W); masks: (N, H, W) bool

A (N, H, W, C) map becomes one value per pixel by summing over channels (after taking
absolute values when absolute=True). Every score lies in [0, 1] (relevance mass: only
with non-negative maps, e.g. absolute=True) and higher is better.

- pointing_game (Zhang et al. 2018): is the map's maximum on the object? `tolerance`
  widens the mask by a disk of that radius in pixels (the paper used 15 at 224x224);
  `weighted` scores a hit 1 - |mask| / (H W), so small objects count more (Quantus'
  option, which in its 0.6.0 release raises a TypeError once an image hits).
- relevance_mass_accuracy (Arras et al. 2022): the share of the map's total relevance
  inside the mask. A map with no relevance at all (total 0) scores NaN, as in Quantus.
- relevance_rank_accuracy (Arras et al. 2022): with K = |mask|, the share of the K most
  relevant pixels that lie inside the mask.
- top_k_intersection (Theiner et al. 2022, as defined in Quantus): the share of the k most
  relevant pixels that lie inside the mask; `concept_influence` divides by the mask's
  share of the image.

Ties: where several pixels share the value at the cut (a constant map, a plateau of zeros
in a ReLU-ed CAM), each tied pixel counts for its expected share over a random choice
among them, so a score never depends on pixel order. Quantus breaks ties by its sort order
instead; on maps without ties at the cut both give the same numbers. The defaults follow
Quantus (absolute=False), except relevance mass and rank, which take absolute values as
the CLEVR-XAI reference code does for its mass accuracy.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import checks
from jaxviz.core import compile as compile_lib
from jaxviz.evaluate import common
from jaxviz.evaluate.registry import Metric, MetricResult, register


def check_maps(images, attributions, masks) -> tuple[jax.Array, jax.Array]:
    """Validated (N, H, W[, C]) float32 attributions and (N, H, W) bool masks for images.

    Raises ValueError naming the argument for a shape that does not fit the images, NaN or
    inf attributions, masks that are not boolean (or 0/1) and masks with no pixel set."""
    x = checks.as_images(images, "images")
    n, h, w, c = x.shape
    a = attributions if hasattr(attributions, "shape") else np.asarray(attributions)
    if a.ndim not in (3, 4) or tuple(a.shape[:3]) != (n, h, w) or (a.ndim == 4 and a.shape[3] != c):
        raise ValueError(f"attributions must be (N, H, W, C) = {(n, h, w, c)} or (N, H, W) = "
                         f"{(n, h, w)} to match the images; got shape {tuple(a.shape)}")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise ValueError(f"attributions must be floating point; got dtype {a.dtype}")
    a = jnp.asarray(a, jnp.float32)
    if not checks.is_traced(a):
        bad = ~np.isfinite(np.asarray(a))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"attributions contain {int(bad.sum())} NaN/inf value(s), the "
                             f"first at index {first}")
    return a, _check_masks(masks, (n, h, w))


def _check_masks(masks, shape) -> jax.Array:
    m = masks if hasattr(masks, "shape") else np.asarray(masks)
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"masks must be (N, H, W) = {tuple(shape)}, one ground-truth mask per "
                         f"image; got shape {tuple(m.shape)}")
    if checks.is_traced(m):
        return m.astype(bool)
    m = np.asarray(m)
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            raise ValueError(f"masks must be boolean (or 0/1); got dtype {m.dtype} with values "
                             f"other than 0 and 1")
        m = m.astype(bool)
    empty = np.flatnonzero(~m.reshape(len(m), -1).any(axis=1))
    if empty.size:
        raise ValueError(f"masks must mark at least one pixel per image; {empty.size} are empty, "
                         f"at image index {empty[:10].tolist()}")
    return jnp.asarray(m)


def _pixel_map(a: jax.Array, absolute: bool) -> jax.Array:
    """(N, H, W[, C]) -> (N, H*W): one value per pixel."""
    a = jnp.abs(a) if absolute else a
    a = a.sum(axis=-1) if a.ndim == 4 else a
    return a.reshape(a.shape[0], -1)


def _top_share(a: jax.Array, m: jax.Array, k: jax.Array, cut: jax.Array | None = None,
               ) -> jax.Array:
    """Share of the k highest pixels of each row of a (N, P) inside m (N, P) bool, with
    pixels tied at the cut counted for their expected share. k: (N,) int in [1, P];
    cut: (N, 1) the k-th highest value, if known (else found by sorting)."""
    if cut is None:
        cut = jnp.take_along_axis(-common.sort_values(-a), (k - 1)[:, None], axis=-1)
    above, at = a > cut, a == cut
    n_above, n_at = above.sum(-1), at.sum(-1)
    inside = (above & m).sum(-1) + (k - n_above) * (at & m).sum(-1) / n_at
    return (inside / k).astype(jnp.float32)


def _dilate(m: jax.Array, radius: int) -> jax.Array:
    """(N, H, W) bool masks grown by a disk of `radius` pixels."""
    r = np.arange(-radius, radius + 1)
    disk = (r[:, None] ** 2 + r[None, :] ** 2 <= radius ** 2).astype(np.float32)
    grown = jax.lax.conv_general_dilated(m[:, None].astype(jnp.float32), disk[None, None],
                                         (1, 1), "SAME")
    return grown[:, 0] > 0.5


@functools.partial(compile_lib.jit, kind="forward",
                   static_argnames=("absolute", "weighted", "tolerance"))
def _pointing_game(a, m, *, absolute, weighted, tolerance):
    m = _dilate(m, tolerance) if tolerance else m
    m = m.reshape(m.shape[0], -1)
    a = _pixel_map(a, absolute)
    hit = _top_share(a, m, jnp.ones(m.shape[0], jnp.int32), a.max(-1, keepdims=True))
    return hit * (1 - m.mean(-1)) if weighted else hit


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("absolute",))
def _relevance_mass(a, m, *, absolute):
    a = _pixel_map(a, absolute)
    return (jnp.where(m.reshape(a.shape), a, 0).sum(-1) / a.sum(-1)).astype(jnp.float32)


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("absolute",))
def _relevance_rank(a, m, *, absolute):
    m = m.reshape(m.shape[0], -1)
    return _top_share(_pixel_map(a, absolute), m, m.sum(-1))


@functools.partial(compile_lib.jit, kind="forward",
                   static_argnames=("k", "absolute", "concept_influence"))
def _top_k(a, m, *, k, absolute, concept_influence):
    m = m.reshape(m.shape[0], -1)
    share = _top_share(_pixel_map(a, absolute), m, jnp.full(m.shape[0], k, jnp.int32))
    return share / m.mean(-1) if concept_influence else share


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def pointing_game(fn, params, images, target, attributions, *, masks, key=None,
                  chunk_size=None, absolute: bool = False, weighted: bool = False,
                  tolerance: int = 0) -> MetricResult:
    """1 where the map's maximum lies in the mask (widened by `tolerance` pixels), else 0.
    -> MetricResult(scores (N,) in [0, 1]). fn, params, target, key, chunk_size: unused."""
    a, m = check_maps(images, attributions, masks)
    tolerance = checks.positive_int(tolerance, "tolerance", minimum=0)
    return MetricResult(_pointing_game(a, m, absolute=_flag(absolute, "absolute"),
                                       weighted=_flag(weighted, "weighted"), tolerance=tolerance))


def relevance_mass_accuracy(fn, params, images, target, attributions, *, masks, key=None,
                            chunk_size=None, absolute: bool = True) -> MetricResult:
    """sum(map inside mask) / sum(map). -> MetricResult(scores (N,)). fn, params, target,
    key, chunk_size: unused."""
    a, m = check_maps(images, attributions, masks)
    return MetricResult(_relevance_mass(a, m, absolute=_flag(absolute, "absolute")))


def relevance_rank_accuracy(fn, params, images, target, attributions, *, masks, key=None,
                            chunk_size=None, absolute: bool = True) -> MetricResult:
    """Share of the |mask| highest pixels inside the mask. -> MetricResult(scores (N,) in
    [0, 1]). fn, params, target, key, chunk_size: unused."""
    a, m = check_maps(images, attributions, masks)
    return MetricResult(_relevance_rank(a, m, absolute=_flag(absolute, "absolute")))


def top_k_intersection(fn, params, images, target, attributions, *, masks, key=None,
                       chunk_size=None, k: int = 100, absolute: bool = False,
                       concept_influence: bool = False) -> MetricResult:
    """Share of the k highest pixels inside the mask (times H W / |mask| with
    concept_influence). -> MetricResult(scores (N,)). fn, params, target, key, chunk_size:
    unused."""
    a, m = check_maps(images, attributions, masks)
    pixels = a.shape[1] * a.shape[2]
    k = checks.positive_int(k, "k")
    if k > pixels:
        raise ValueError(f"k must be at most the number of pixels, {pixels} for "
                         f"{a.shape[1]}x{a.shape[2]} maps; got {k}")
    return MetricResult(_top_k(a, m, k=k, absolute=_flag(absolute, "absolute"),
                               concept_influence=_flag(concept_influence, "concept_influence")))


_PAPER_ARRAS = ("Arras et al. 2022, CLEVR-XAI: a benchmark dataset for the ground truth "
                "evaluation of neural network explanations")
for _m in (
    Metric("pointing_game", pointing_game, "higher", "localisation", needs_masks=True,
           paper="Zhang et al. 2018, Top-down neural attention by excitation backprop"),
    Metric("relevance_mass_accuracy", relevance_mass_accuracy, "higher", "localisation",
           needs_masks=True, paper=_PAPER_ARRAS),
    Metric("relevance_rank_accuracy", relevance_rank_accuracy, "higher", "localisation",
           needs_masks=True, paper=_PAPER_ARRAS),
    Metric("top_k_intersection", top_k_intersection, "higher", "localisation",
           needs_masks=True, defaults=dict(k=100), quick=dict(k=8),
           paper="Theiner et al. 2022, Interpretable semantic photo geolocation"),
):
    register(_m)
