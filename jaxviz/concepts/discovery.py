"""Concepts a layer finds by itself: NMF of its activations over a data set.

    d = discover(probe, params, x, layer="conv2", n_concepts=5, key=jax.random.key(0))
    d.directions   # (k, C) the concepts, non-negative directions in channel space
    d.heat         # (N, h, w, k) how much of each concept sits at each position
    imp = concept_importance(probe, params, x_class, d, target=3)
    patches = top_patches(x, d, n=6)          # (k, n, p, p, C)

The layer's (N, h, w, C) activations are one (N·h·w, C) matrix A of positions x channels;
NMF (`factorize.py`) writes A ≈ W H, W >= 0 (positions x concepts: the heat maps) and H >= 0
(concepts x channels: the directions), as DeepFeatureFactorization and CRAFT do. A dense
layer's (N, C) activations are positions of one. NMF needs A >= 0: a layer read before
its ReLU is clipped at 0 (`clip_negative`).

Importance of concept k for a target, as CRAFT's gradient variant: the directional
derivative of the target's score along the unit direction h_k applied at every position,
Σ_p ∇_a f(x)[p] · h_k / |h_k|, per image; `concept_importance` returns its mean over the
images and the fraction of images where it is positive (a TCAV score of the concept).
Each concept's feature visualization is `jaxviz.maximize` with
`objectives.direction(layer, h_k)` (`direction_objectives`).
"""
from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.concepts import factorize as nmf_lib
from jaxviz.concepts import scores as tcav_lib
from jaxviz.core import checks
from jaxviz.core import objectives as objectives_lib


@dataclasses.dataclass(frozen=True)
class Discovery:
    """layer; directions (k, C); heat (N, h, w, k) (h = w = 1 for a dense layer);
    error: NMF's relative reconstruction error; clipped: share of negative activations
    set to 0 before factorizing."""
    layer: str
    directions: np.ndarray
    heat: np.ndarray
    error: float
    clipped: float

    @property
    def n_concepts(self) -> int:
        return int(self.directions.shape[0])


def _spatial(a: jax.Array) -> jax.Array:
    """(N, ...) activations -> (N, h, w, C): a dense layer's (N, C) as (N, 1, 1, C)."""
    if a.ndim == 2:
        return a[:, None, None, :]
    if a.ndim != 4:
        raise ValueError(f"concept discovery needs a (N, C) or (N, h, w, C) layer; got an "
                         f"activation of shape {tuple(a.shape)}")
    return a


def _nonneg(a, clip_negative, layer):
    neg = float((a < 0).mean())
    if neg and clip_negative is False:
        raise ValueError(f"layer {layer!r}: {neg:.1%} of its activations are negative and "
                         f"clip_negative=False; NMF needs A >= 0 (pick a layer after a ReLU)")
    if neg and clip_negative is None:
        warnings.warn(f"layer {layer!r}: {neg:.1%} of its activations are negative (read "
                      f"before a ReLU?); they are set to 0 for NMF (clip_negative=True "
                      f"says so without this warning)", UserWarning, stacklevel=3)
    return jnp.maximum(a, 0), neg


def layer_maps(probe, params, x, layer: str, chunk_size: int | None = None) -> jax.Array:
    """(N, h, w, C) activations of `layer` (a dense layer's as (N, 1, 1, C))."""
    shape = probe.check_layer(layer, (1, *np.shape(x)[1:]))
    flat = tcav_lib.layer_activations(probe, params, x, layer, chunk_size)
    return _spatial(flat.reshape(len(flat), *shape[1:]))


def discover(probe, params, images, *, layer: str, n_concepts: int, key, steps: int = 300,
             clip_negative: bool | None = None, chunk_size: int | None = None) -> Discovery:
    """NMF concepts of `layer` over `images` (module docstring).

    Args:
      images: (N, H, W, C) the data set the concepts are found in.
      n_concepts: k, the number of concepts.
      key: PRNG key of NMF's start.
      steps: NMF's multiplicative updates.
      clip_negative: None: negative activations are set to 0 with a UserWarning; True:
        the same, silently; False: refused (ValueError).
    Returns:
      Discovery(layer, directions (k, C), heat (N, h, w, k), error, clipped).
    """
    x = checks.as_images(images, "images", input_shape=probe.input_shape)
    a, neg = _nonneg(layer_maps(probe, params, x, layer, chunk_size), clip_negative, layer)
    n, h, w, c = a.shape
    fit = nmf_lib.nmf(a.reshape(-1, c), n_concepts, key=key, steps=steps)
    return Discovery(layer, np.asarray(fit.h), np.asarray(fit.w).reshape(n, h, w, -1),
                     float(fit.error), neg)


def concept_heat(probe, params, images, discovery: Discovery, *, steps: int = 100,
                 chunk_size: int | None = None) -> np.ndarray:
    """(N, h, w, k) heat maps of the discovered concepts on new images (W solved with H
    fixed)."""
    x = checks.as_images(images, "images", input_shape=probe.input_shape)
    a = jnp.maximum(layer_maps(probe, params, x, discovery.layer, chunk_size), 0)
    n, h, w, c = a.shape
    return np.asarray(nmf_lib.project(a.reshape(-1, c), discovery.directions,
                                      steps=steps)).reshape(n, h, w, -1)


def concept_importance(probe, params, images, discovery: Discovery, target,
                       chunk_size: int | None = None) -> dict:
    """Per concept: the target's directional derivative along it at every position.

    target: a class index or an Objective. -> {"importance": (k,) mean over images,
    "positive_fraction": (k,), "per_image": (N, k)}.
    """
    x = checks.as_images(images, "images", input_shape=probe.input_shape)
    shape = probe.check_layer(discovery.layer, (1, *x.shape[1:]))
    g = tcav_lib.layer_gradients(probe, params, x, discovery.layer, target, chunk_size)
    g = _spatial(g.reshape(len(g), *shape[1:])).sum(axis=(1, 2))  # (N, C)
    d = discovery.directions / np.maximum(
        np.linalg.norm(discovery.directions, axis=1, keepdims=True), 1e-30)
    s = np.asarray(g @ jnp.asarray(d).T)
    return {"importance": s.mean(0), "positive_fraction": (s > 0).mean(0), "per_image": s}


def top_patches(images, discovery: Discovery, *, n: int = 6, patch: int | None = None,
                heat: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The n image patches where each concept is strongest (one per image at most).

    images: (N, H, W, C) the images `heat` is of (default: discovery.heat's).
    patch: side in pixels (default: 3 layer cells, at least H // 4), centred on the
    strongest position. -> (patches (k, n, p, p, C), their images' indices (k, n)).
    """
    x = np.asarray(images)
    heat = discovery.heat if heat is None else np.asarray(heat)
    n_img, h, w, k = heat.shape
    big_h, big_w = x.shape[1:3]
    p = patch or max(3 * big_h // h, big_h // 4)
    p = min(p, big_h, big_w)
    n = min(n, n_img)
    out, which = np.zeros((k, n, p, p, x.shape[-1]), x.dtype), np.zeros((k, n), int)
    for j in range(k):
        best = heat[..., j].reshape(n_img, -1)
        for slot, i in enumerate(np.argsort(-best.max(1))[:n]):
            yy, xx = divmod(int(best[i].argmax()), w)
            cy, cx = int((yy + 0.5) * big_h / h), int((xx + 0.5) * big_w / w)
            y0 = int(np.clip(cy - p // 2, 0, big_h - p))
            x0 = int(np.clip(cx - p // 2, 0, big_w - p))
            out[j, slot], which[j, slot] = x[i, y0:y0 + p, x0:x0 + p], i
    return out, which


def direction_objectives(discovery: Discovery) -> list:
    """One `objectives.direction(layer, h_k / |h_k|)` per concept, for jaxviz.maximize."""
    d = discovery.directions / np.maximum(
        np.linalg.norm(discovery.directions, axis=1, keepdims=True), 1e-30)
    return [objectives_lib.direction(discovery.layer, v) for v in d]
