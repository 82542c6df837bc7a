"""Cluttered MNIST (in the style of Mnih et al. 2014 and Jaderberg et al. 2015): each digit
at a random position on a larger canvas, among small crops of other digits, with its own
pixels as the ground truth for localisation metrics.

    sets = load(seed=0)            # from the bundled digits: 4,000 train / 1,000 validation
    sets.x_train, sets.y_train     # what jaxviz.train.fit reads, like data.load_bundled()
    sets.val.masks, sets.val.boxes # ground truth: the digit's pixels and its tight box

Everything comes from one seed (numpy's generator): the same seed gives identical arrays.
Pieces of clutter may overlap the digit; where they do the image keeps the brighter pixel
and the mask still marks only the digit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxviz import data as data_lib


class Cluttered(NamedTuple):
    """images: (N, S, S, 1) float32 in [0, 1]; labels: (N,) int32; masks: (N, S, S) bool,
    the digit's pixels; boxes: (N, 4) int32 (top, left, bottom, right), bottom/right
    exclusive, the tight box around the mask; origins: (N, 2) int32 where the digit's
    28x28 frame was placed (top, left)."""
    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    origins: np.ndarray


class ClutteredMNIST(NamedTuple):
    """Train and validation sets; x_*/y_* are the fields `jaxviz.train.fit` reads."""
    train: Cluttered
    val: Cluttered
    name: str = "cluttered_mnist"

    @property
    def x_train(self): return self.train.images
    @property
    def y_train(self): return self.train.labels
    @property
    def x_val(self): return self.val.images
    @property
    def y_val(self): return self.val.labels


def _check(digits, labels, canvas, n_clutter, clutter_size, threshold):
    d = np.asarray(digits)
    if d.ndim == 4 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 3 or d.shape[0] < 2:
        raise ValueError(f"digits must be (N, h, w) or (N, h, w, 1) with N >= 2 (clutter comes "
                         f"from other digits); got shape {np.shape(digits)}")
    if not np.issubdtype(d.dtype, np.floating) or d.min() < 0 or d.max() > 1:
        raise ValueError("digits must be float images in [0, 1] (data.load_bundled() gives them)")
    y = np.asarray(labels)
    if y.shape != (len(d),):
        raise ValueError(f"labels must be (N,) = ({len(d)},); got shape {y.shape}")
    h, w = d.shape[1:]
    if not isinstance(canvas, (int, np.integer)) or canvas < max(h, w):
        raise ValueError(f"canvas must be an int >= the digit size {max(h, w)}; got {canvas!r}")
    if not isinstance(n_clutter, (int, np.integer)) or n_clutter < 0:
        raise ValueError(f"n_clutter must be an int >= 0; got {n_clutter!r}")
    if not isinstance(clutter_size, (int, np.integer)) or not 1 <= clutter_size <= min(h, w):
        raise ValueError(f"clutter_size must be an int in [1, {min(h, w)}]; got {clutter_size!r}")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must lie in [0, 1); got {threshold!r}")
    ink = (d > threshold).reshape(len(d), -1).any(axis=1)
    if not ink.all():
        raise ValueError(f"digits {np.flatnonzero(~ink)[:10].tolist()} have no pixel above "
                         f"threshold={threshold}: no ground truth to mark")
    return d.astype(np.float32), y.astype(np.int32)


def _paste_max(canvas, patches, top, left):
    """canvas (N, S, S) <- max(canvas, patches (N, p, q) at (top, left) (N,)), in place."""
    n, p, q = patches.shape
    rows = (top[:, None] + np.arange(p))[:, :, None]
    cols = (left[:, None] + np.arange(q))[:, None, :]
    idx = (np.arange(n)[:, None, None], rows, cols)
    canvas[idx] = np.maximum(canvas[idx], patches)


def _crops(d, src, top, left, size):
    """d[src[i], top[i]:top[i]+size, left[i]:left[i]+size] for every i -> (M, size, size)."""
    rows = (top[:, None] + np.arange(size))[:, :, None]
    cols = (left[:, None] + np.arange(size))[:, None, :]
    return d[src[:, None, None], rows, cols]


def _tight_boxes(masks) -> np.ndarray:
    """(N, S, S) bool, none empty -> (N, 4) int32 (top, left, bottom, right), exclusive."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    first = lambda a: a.argmax(axis=1)
    last = lambda a: a.shape[1] - a[:, ::-1].argmax(axis=1)
    return np.stack([first(rows), first(cols), last(rows), last(cols)], 1).astype(np.int32)


def clutter(digits, labels, *, seed, canvas: int = 60, n_clutter: int = 4,
            clutter_size: int = 8, threshold: float = 0.0) -> Cluttered:
    """One cluttered image per digit. digits: (N, h, w[, 1]) float in [0, 1]; labels: (N,).

    Each digit goes wholly inside a canvas x canvas image at a uniform random position;
    n_clutter crops of clutter_size x clutter_size, each from another digit chosen at
    random (from the central part of its frame, where the ink is), go at uniform random
    positions. The mask is the digit's pixels brighter than `threshold`. seed: an int or a
    numpy SeedSequence."""
    d, y = _check(digits, labels, canvas, n_clutter, clutter_size, threshold)
    rng = np.random.default_rng(seed)
    n, h, w = d.shape
    origins = np.stack([rng.integers(0, canvas - h + 1, n), rng.integers(0, canvas - w + 1, n)], 1)
    images = np.zeros((n, canvas, canvas), np.float32)
    for _ in range(n_clutter):
        src = rng.integers(0, n - 1, n)
        src += src >= np.arange(n)  # never the digit itself
        margin = min(4, (min(h, w) - clutter_size) // 2)
        ct = rng.integers(margin, h - margin - clutter_size + 1, n)
        cl = rng.integers(margin, w - margin - clutter_size + 1, n)
        pt = rng.integers(0, canvas - clutter_size + 1, n)
        pl = rng.integers(0, canvas - clutter_size + 1, n)
        _paste_max(images, _crops(d, src, ct, cl, clutter_size), pt, pl)
    digit_layer = np.zeros_like(images)
    _paste_max(digit_layer, d, origins[:, 0], origins[:, 1])
    masks = digit_layer > threshold
    images = np.maximum(images, digit_layer)
    return Cluttered(images[..., None], y, masks, _tight_boxes(masks), origins.astype(np.int32))


def box_masks(boxes, canvas: int) -> np.ndarray:
    """(N, 4) (top, left, bottom, right) boxes -> (N, canvas, canvas) bool masks."""
    b = np.asarray(boxes)
    r = np.arange(canvas)
    inside_rows = (r >= b[:, 0:1]) & (r < b[:, 2:3])
    inside_cols = (r >= b[:, 1:2]) & (r < b[:, 3:4])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def load(seed: int = 0, *, source=None, train_copies: int = 1, **options) -> ClutteredMNIST:
    """Cluttered train and validation sets from `source` (a data.Dataset; default the
    bundled digits), each from its own stream of `seed`. train_copies: how many cluttered
    versions of each training digit (each with its own positions and clutter) the train
    set holds, in blocks of one copy each. options: clutter()'s."""
    source = data_lib.load_bundled() if source is None else source
    if isinstance(train_copies, bool) or not isinstance(train_copies, (int, np.integer)) \
            or train_copies < 1:
        raise ValueError(f"train_copies must be an int >= 1; got {train_copies!r}")
    copies = [clutter(source.x_train, source.y_train, seed=np.random.SeedSequence([seed, 0, i]),
                      **options) for i in range(train_copies)]
    train = Cluttered(*(np.concatenate(field) for field in zip(*copies)))
    val = clutter(source.x_val, source.y_val, seed=np.random.SeedSequence([seed, 1]), **options)
    return ClutteredMNIST(train, val)
