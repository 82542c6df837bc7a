"""Perturbation samplers: feature ablation, Shapley value sampling and RISE, with every model
evaluation a batched forward pass (KernelSHAP and LIME, which fit a surrogate on the same
kind of samples, are in `surrogate`).

    res = feature_ablation(fn, params, x, y)                          # res.map: (N, H, W)
    res = shapley_sampling(fn, params, x, y, key=key, n_samples=25)  # an Attribution
    res = rise(fn, params, x, y, key=key, n_masks=1000)              # each

Features. Feature ablation, Shapley sampling, KernelSHAP and LIME perturb groups of pixels:
`feature_mask` (H, W) ints shared by every image, or (N, H, W) one per image (e.g.
superpixels), ids 0..F-1 spanning all channels; else a grid of `grid` = (h, w) pixel
cells, cell id (i // h) * nW + j // w (the last row and column cut off at the edge:
occlusion's windows with stride == window). The default grid (`grid=None`) splits every
image into at most DEFAULT_CELLS x DEFAULT_CELLS cells of ceil(H / 7) x ceil(W / 7) pixels:
4 x 4-pixel cells on 28 x 28 digits, 32 x 32 on 224 x 224 images. A fixed cell size would
make the cost grow with the image's area (4 x 4 cells are 3,136 features at 224 x 224, so
feature ablation alone needs 3,137 forward passes per image and Shapley sampling 78,000). A sample z in {0, 1}^F keeps the features with
z = 1 and puts the baseline in the others: x_z = where(z[mask], x, baselines). Every pixel
of a feature carries that feature's attribution, so maps are (N, H, W).

Batching. `chunk_size` samples, each a perturbed copy of the whole batch, are built
vmapped and go through the model as ONE forward pass of batch chunk_size x N; a lax.map
over chunks bounds memory. The default (None, `sampler_chunk`) is DEFAULT_CHUNK samples per
pass, fewer where that many passes of the model on the batch would hold more than
`analysis.CHUNK_MEMORY` (by `analysis.default_chunk`), in chunks of equal size: the
digits' 49-feature ablation runs 13 samples at a time, a 224 x 224 ResNet-18 on 8 images
10 at a time. Random samplers take
`key`, one PRNG key (split per image) or one per image, and draw image i's samples from
image i's key alone, so a result never depends on which images share the batch. (Captum
draws one permutation or mask set per call and applies it to every image of the batch.)
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks
from jaxviz.core import method as method_lib
from jaxviz.core.result import Attribution, attribution_method
from jaxviz import occlusion as occlusion_lib


def check_score(score) -> str:
    if not isinstance(score, str) or score not in analysis.SCORES:
        raise ValueError(f"score must be one of {analysis.SCORES}; got {score!r}")
    return score


# The default feature grid's cells a side, and the most samples one forward pass takes.
DEFAULT_CELLS = 7
DEFAULT_CHUNK = 16


def default_grid(shape) -> tuple[int, int]:
    """The (h, w) pixel cells of the default grid on (H, W) images: at most DEFAULT_CELLS a
    side, ceil(H / DEFAULT_CELLS) x ceil(W / DEFAULT_CELLS) pixels each."""
    return tuple(-(-int(d) // DEFAULT_CELLS) for d in shape)


def sampler_chunk(chunk_size, fn, params, x_shape, n_passes: int) -> int | None:
    """A sampler's samples per forward pass: chunk_size checked; None: at most DEFAULT_CHUNK,
    fewer when n_passes passes of fn on x_shape need more than analysis.CHUNK_MEMORY
    (`analysis.default_chunk`), made even: n_passes split into as few chunks as that allows,
    of equal size (49 samples: 4 chunks of 13, not 16 + 16 + 16 + 1 padded to 16)."""
    if chunk_size is not None:
        return analysis.check_chunk_size(chunk_size)
    fit = analysis.default_chunk(None, fn, params, x_shape, n_passes)
    most = min(DEFAULT_CHUNK, n_passes if fit is None else fit)
    return -(-n_passes // -(-n_passes // most))  # even chunks: the last one's padding is small


def grid_mask(shape, grid) -> tuple[np.ndarray, int]:
    """(H, W) cell ids of a (h, w)-pixel grid over an (H, W) image, and the cell count F."""
    (h, w), (gh, gw) = shape, checks.pair(grid, "grid")
    if gh > h or gw > w:
        raise ValueError(f"grid cells {(gh, gw)} are larger than the images' (H, W) {(h, w)}")
    cols = math.ceil(w / gw)
    ids = (np.arange(h)[:, None] // gh) * cols + np.arange(w)[None, :] // gw
    return ids.astype(np.int32), math.ceil(h / gh) * cols


def feature_mask(mask, grid, x_shape) -> tuple[jax.Array, int]:
    """A checked feature mask as (1 or N, H, W) int32 and its feature count F (static)."""
    n, h, w, _ = x_shape
    if mask is None:
        ids, f = grid_mask((h, w), default_grid((h, w)) if grid is None else grid)
        return jnp.asarray(ids[None]), f
    if checks.is_traced(mask):
        raise ValueError("feature_mask must be a concrete array (its number of features sets "
                         "the shapes); build it outside jit")
    m = np.asarray(mask)
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"feature_mask must hold integer feature ids; got dtype {m.dtype}")
    if m.shape not in ((h, w), (1, h, w), (n, h, w)):
        raise ValueError(f"feature_mask must be (H, W) = {(h, w)} or (N, H, W) = {(n, h, w)}; "
                         f"got shape {m.shape}")
    if m.min() < 0:
        raise ValueError(f"feature_mask ids must be >= 0 (0..F-1); got minimum {int(m.min())}")
    return jnp.asarray(m.reshape((-1, h, w)), jnp.int32), int(m.max()) + 1


def baseline_like(baselines, x, name: str = "baselines") -> jax.Array:
    """A number, (H, W, C), (1, H, W, C) or (N, H, W, C) -> (N, H, W, C) float32."""
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        b = jnp.full_like(x, baselines)
    else:
        b = jnp.asarray(baselines, jnp.float32) if baselines is not None else None
        if b is None or b.shape not in (x.shape, x.shape[1:], (1,) + x.shape[1:]):
            raise ValueError(f"{name} must be a number or an array of shape (H, W, C), "
                             f"(1, H, W, C) or (N, H, W, C) = {tuple(x.shape)}; got "
                             f"{getattr(b, 'shape', baselines)!r}")
        b = jnp.broadcast_to(b, x.shape)
    checks.warn_outside_range(b, x, name)
    return b


def masked_inputs(x, b, masks, z):
    """x, b: (N, H, W, C); masks: (1 or N, H, W) ids; z: (N, F) bool -> where(z[mask], x, b)."""
    n = x.shape[0]
    ids = jnp.broadcast_to(masks, x.shape[:3]).reshape(n, -1)
    keep = jnp.take_along_axis(z, ids, axis=1).reshape(x.shape[:3] + (1,))
    return jnp.where(keep, x, b)


def to_pixels(values, masks):
    """values: (N, F) per feature -> (N, H, W), each pixel its feature's value."""
    n = values.shape[0]
    ids = jnp.broadcast_to(masks, (n,) + masks.shape[1:])
    return jnp.take_along_axis(values, ids.reshape(n, -1), axis=1).reshape(ids.shape)


def flat_scores(fn, params, inputs, t):
    """(c, N, H, W, C) perturbed copies of the batch -> (c, N) scores of the target t (one
    `targets.Target`), from ONE forward pass of batch c * N (`method.copy_scores`). Not a
    vmap over the copies: on XLA CPU a model vmapped over samples runs several times slower
    than the same rows as one batch (a vmapped max-pool is a 5-D reduce_window that does
    not fuse)."""
    return method_lib.copy_scores(fn, params, inputs, t)


def map_chunks(f, items, chunk_size: int | None):
    """f(items) for items with leading axis S, chunk_size rows per call under a lax.map
    (the last chunk padded with copies of the last item, then dropped); None: one call.
    f: pytree with leading axis c -> pytree with leading axis c."""
    s = jax.tree.leaves(items)[0].shape[0]
    if chunk_size is None or chunk_size >= s:
        return f(items)
    steps = -(-s // chunk_size)
    pad = steps * chunk_size - s
    chunks = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]).reshape(
        (steps, chunk_size) + a.shape[1:]), items)
    out = jax.lax.map(f, chunks)
    return jax.tree.map(lambda o: o.reshape((steps * chunk_size,) + o.shape[2:])[:s], out)


def sample_scores(fn, params, x, b, t, masks, make_z, items, chunk_size):
    """(S, N) target scores of the perturbed batches; items: a pytree with leading axis S,
    make_z(item) -> (N, F) bool. chunk_size items' batches per forward pass. Traced inline."""
    def chunk(its):
        z = jax.vmap(make_z)(its)
        inputs = jax.vmap(lambda zs: masked_inputs(x, b, masks, zs))(z)
        return flat_scores(fn, params, inputs, t)
    return map_chunks(chunk, items, chunk_size)


def chunked_sum(f, n: int, chunk_size: int | None):
    """The sum over s = 0..n-1 of f's rows: f(ids (c,) int32) -> pytree with leading axis c.
    chunk_size ids per call under a scan, so memory holds one chunk's outputs (None: one
    call). The last chunk's padding repeats id n - 1 and is dropped from the sum."""
    if chunk_size is None or chunk_size >= n:
        return jax.tree.map(lambda a: a.sum(0), f(jnp.arange(n, dtype=jnp.int32)))
    steps = -(-n // chunk_size)
    ids = jnp.arange(steps * chunk_size, dtype=jnp.int32).reshape(steps, chunk_size)

    def body(acc, chunk):
        valid = chunk < n
        out = jax.tree.map(lambda o: jnp.where(valid.reshape((-1,) + (1,) * (o.ndim - 1)), o,
                                               0).sum(0), f(jnp.minimum(chunk, n - 1)))
        return jax.tree.map(jnp.add, acc, out), None

    init = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), jax.eval_shape(f, ids[0]))
    return jax.lax.scan(body, init, ids)[0]


def prepare(fn, params, x, baselines, mask, grid, chunk_size, passes):
    """Checked (baselines (N, H, W, C), masks, F, chunk_size) of a sampler on checked images
    x; passes(F): its number of samples (perturbed batches), for the default chunk size."""
    chunk_size = analysis.check_chunk_size(chunk_size)
    masks, n_features = feature_mask(mask, grid, x.shape)
    chunk_size = sampler_chunk(chunk_size, fn, params, x.shape, max(passes(n_features), 1))
    return baseline_like(baselines, x), masks, n_features, chunk_size


# ---- feature ablation --------------------------------------------------------------------

def _ablation(fn, params, x, t, b, masks, *, n_features, chunk_size):
    base = method_lib.scores(fn, params, x, t)
    feats = jnp.arange(n_features)
    ablated = sample_scores(fn, params, x, b, t, masks,
                            lambda j: jnp.broadcast_to(feats != j, (x.shape[0], n_features)),
                            feats, chunk_size)  # (F, N)
    return Attribution(to_pixels((base[None] - ablated).T, masks))


# Grids with at least this many cells run feature ablation as incremental occlusion (the
# default grid has 49).
INCREMENTAL_MIN_CELLS = 25


@attribution_method("feature_ablation", targets=method_lib.PERTURBATION)
def feature_ablation(fn, params, images, target, *, feature_mask=None, grid=None,
                     baselines=0.0, score: str = "logit", chunk_size: int | None = None
                     ) -> Attribution:
    """Feature ablation (Captum's FeatureAblation): feature f's attribution is
    score(x) - score(x with feature f set to the baseline). -> Attribution, map (N, H, W).

    feature_mask: (H, W) or (N, H, W) ids, default the `grid` cells ((h, w) pixels; None:
    the 7 x 7 default grid, module docstring); baselines: a number or an image-shaped array;
    score: "logit", "prob" or "log_prob"; chunk_size: features (ablated copies of the batch)
    evaluated at once (None: `sampler_chunk`); on a grid of INCREMENTAL_MIN_CELLS or more
    cells, occlusion's `chunk_size` (passes per step; None: what fits in memory)."""
    x, t = images, target
    b, masks, f, chunk = prepare(fn, params, x, baselines, feature_mask, grid, chunk_size,
                                 lambda f: f)
    if feature_mask is None and f >= INCREMENTAL_MIN_CELLS and not t.needs_acts:
        # Grid cells are occlusion windows with stride = window: the incremental path
        # recomputes only what one cell changes in each layer, for the same scores. With
        # few cells each is a large part of every layer, so it would save little and
        # compile a larger program.
        cell = default_grid(x.shape[1:3]) if grid is None else grid
        with warnings.catch_warnings():  # prepare has already said it, once
            warnings.filterwarnings("ignore", "baselines? .*outside the input range")
            occ = occlusion_lib.occlusion(fn, params, x, t, window=cell, stride=cell,
                                          baseline=b, score=score, chunk_size=chunk_size,
                                          method="incremental")
        return Attribution(occ.map)
    return method_lib.run(_ablation, fn, params, x, t, kind="forward", b=b, masks=masks,
                          n_features=f, chunk_size=chunk)


# ---- Shapley value sampling --------------------------------------------------------------

def image_draws(keys, n: int, bits: bool = False) -> jax.Array:
    """n random numbers per image, from that image's key alone: (N, n) uniform [0, 1)
    float32 (bits=True: uint32 words). One flat draw per image: XLA CPU compiles batched
    multi-dimensional or per-sample (fold_in under vmap) threefry draws several times slower."""
    draw = jax.random.bits if bits else jax.random.uniform
    return jax.vmap(lambda k: draw(k, (n,)))(keys)


def permutation_ranks(keys, n_samples: int, n_features: int) -> jax.Array:
    """Each image's n_samples random feature orders, as ranks: (N, n_samples, F) int32,
    ranks[i, s, f] = the position of feature f in image i's s-th permutation (the order of
    F random 32-bit words)."""
    words = image_draws(keys, n_samples * n_features, bits=True)
    words = words.reshape(keys.shape[0], n_samples, n_features)
    return jnp.argsort(jnp.argsort(words, axis=-1), axis=-1).astype(jnp.int32)


def _shapley(fn, params, x, t, b, masks, keys, *, n_features, n_samples, chunk_size):
    n, f = x.shape[0], n_features
    ranks = permutation_ranks(keys, n_samples, f)
    # Prefix j (1 <= j < F) of permutation s: the first j features in, the rest baseline.
    s_idx, j_idx = (a.ravel() for a in np.meshgrid(np.arange(n_samples), np.arange(1, f),
                                                   indexing="ij"))
    inner = sample_scores(fn, params, x, b, t, masks, lambda sj: ranks[:, sj[0], :] < sj[1],
                          (jnp.asarray(s_idx), jnp.asarray(j_idx)), chunk_size)
    ends = flat_scores(fn, params, jnp.stack([b, x]), t)  # (2, N)
    ys = jnp.concatenate([jnp.broadcast_to(ends[0], (n_samples, 1, n)),
                          inner.reshape(n_samples, f - 1, n),
                          jnp.broadcast_to(ends[1], (n_samples, 1, n))], axis=1)
    ys = jnp.moveaxis(ys, -1, 0)  # (N, n_samples, F + 1): score after the first j features
    gain = (jnp.take_along_axis(ys, ranks + 1, axis=2) - jnp.take_along_axis(ys, ranks, axis=2))
    return Attribution(to_pixels(gain.mean(axis=1), masks))


@attribution_method("shapley_sampling", targets=method_lib.PERTURBATION)
def shapley_sampling(fn, params, images, target, *, key, n_samples: int = 25,
                     feature_mask=None, grid=None, baselines=0.0, score: str = "logit",
                     chunk_size: int | None = None) -> Attribution:
    """Shapley value sampling (Captum's ShapleyValueSampling; Castro et al. 2009): add the
    features to the baseline one by one in a random order; a feature's attribution is the
    score's change when it is added, averaged over n_samples orders. -> map (N, H, W).

    Costs n_samples * (F - 1) + 2 forward passes per image. key: one PRNG key or one per
    image. Other options as `feature_ablation`; chunk_size: prefixes evaluated at once."""
    n_samples = checks.positive_int(n_samples, "n_samples")
    x = images
    b, masks, f, chunk = prepare(fn, params, x, baselines, feature_mask, grid, chunk_size,
                                 lambda f: n_samples * (f - 1))
    keys = analysis.image_keys(key, x.shape[0])
    return method_lib.run(_shapley, fn, params, x, target, kind="forward", b=b, masks=masks,
                          keys=keys, n_features=f, n_samples=n_samples, chunk_size=chunk)


# ---- RISE ----------------------------------------------------------------------------------

def rise_mask(u, shape, cells: int, p_keep: float) -> jax.Array:
    """One RISE mask (Petsiuk et al. 2018) from cells * cells + 2 uniforms u: a cells x cells
    Bernoulli(p_keep) grid, upsampled bilinearly to (cells + 1) * ceil(H / cells) pixels a
    side and cropped to (H, W) at a random offset below one cell. -> (H, W) in [0, 1]."""
    (h, w), (ch, cw) = shape, (math.ceil(shape[0] / cells), math.ceil(shape[1] / cells))
    grid = (u[:-2] < p_keep).astype(jnp.float32).reshape(cells, cells)
    up = jax.image.resize(grid, ((cells + 1) * ch, (cells + 1) * cw), "bilinear")
    dy = jnp.minimum((u[-2] * ch).astype(jnp.int32), ch - 1)
    dx = jnp.minimum((u[-1] * cw).astype(jnp.int32), cw - 1)
    return jax.lax.dynamic_slice(up, (dy, dx), (h, w))


def _rise(fn, params, x, t, b, keys, *, n_masks, cells, p_keep, chunk_size):
    u = image_draws(keys, n_masks * (cells * cells + 2)).reshape(x.shape[0], n_masks, -1)

    def masks(s):  # mask s of every image: (N, H, W)
        return jax.vmap(lambda ui: rise_mask(ui[s], x.shape[1:3], cells, p_keep))(u)

    def chunk(ids):  # (c,) mask ids -> (c, N, H, W) score-weighted masks
        m = jax.vmap(masks)(ids)[..., None]
        scores = flat_scores(fn, params, m * x + (1 - m) * b, t)
        return scores[..., None, None] * m[..., 0]

    return Attribution(chunked_sum(chunk, n_masks, chunk_size) / (n_masks * p_keep))


@attribution_method("rise", targets=method_lib.PERTURBATION)
def rise(fn, params, images, target, *, key, n_masks: int = 1000, cells: int = 8,
         p_keep: float = 0.5, baselines=0.0, score: str = "prob",
         chunk_size: int | None = None) -> Attribution:
    """RISE (Petsiuk et al. 2018): the score-weighted mean of random smooth masks,
    sum_i score(x * M_i + b * (1 - M_i)) M_i / (n_masks * p_keep). -> map (N, H, W).

    cells: the coarse grid's size (s in the paper); p_keep: each cell's chance to be kept;
    score: "prob" (the paper's softmax probability), "logit" or "log_prob"; key: one PRNG
    key or one per image; chunk_size: masks (masked copies of the batch) evaluated at once
    (None: `sampler_chunk`). The mask's upsampling handles borders like `jax.image.resize`, not skimage's reflect.
    Memory: the masks' random numbers, N * n_masks * (cells^2 + 2) floats, are drawn first.
    """
    n_masks = checks.positive_int(n_masks, "n_masks")
    cells = checks.positive_int(cells, "cells")
    if isinstance(p_keep, bool) or not isinstance(p_keep, (int, float)) or not 0 < p_keep <= 1:
        raise ValueError(f"p_keep must be a number in (0, 1]; got {p_keep!r}")
    chunk_size = analysis.check_chunk_size(chunk_size)
    x = images
    if cells > min(x.shape[1:3]):
        raise ValueError(f"cells must be <= the images' H and W {x.shape[1:3]}; got {cells}")
    keys = analysis.image_keys(key, x.shape[0])
    chunk_size = sampler_chunk(chunk_size, fn, params, x.shape, n_masks)
    return method_lib.run(_rise, fn, params, x, target, kind="forward",
                          b=baseline_like(baselines, x), keys=keys, n_masks=n_masks,
                          cells=cells, p_keep=float(p_keep), chunk_size=chunk_size)
