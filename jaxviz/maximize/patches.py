"""Top-activating dataset patches: the data-set side of "what each channel looks for".

    top = top_patches(probe, params, images, "conv2", k=4)
    top.patches   # (C, k, ph, pw, ch): for each channel, the k images' windows around the
                  # position where it fires most (one window per image, best first)
    top.value     # (C, k) those activations; top.index (C, k) image indices; top.yx (C, k, 2)

The window is the unit's receptive field, measured rather than derived from the
architecture: the bounding box of the input pixels whose gradient reaches the layer's
centre unit (over a few random inputs), moved by the layer's stride (measured the same way
at the next unit). A dense layer's window is the whole image.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core.checks import positive_int


class Patches(NamedTuple):
    patches: np.ndarray   # (C, k, ph, pw, ch)
    index: np.ndarray     # (C, k) image index
    yx: np.ndarray        # (C, k, 2) position in the layer's map
    value: np.ndarray     # (C, k) the channel's activation there
    box: tuple            # (ph, pw) the receptive field


def _box(probe, params, layer, x, y0, x0):
    """(row0, row1, col0, col1) of the input gradient's support for unit (y0, x0), all
    channels summed, any of the images."""
    def f(z):
        return probe.run(params, z)[1][layer][:, y0, x0, :].sum()
    g = np.asarray(jnp.abs(jax.jit(jax.grad(f))(x))).max(axis=(0, 3))
    rows, cols = np.flatnonzero(g.max(1) > 0), np.flatnonzero(g.max(0) > 0)
    if rows.size == 0:
        raise ValueError(f"layer {layer!r}: no input pixel reaches unit ({y0}, {x0}) (a dead "
                         f"unit for every test input); pass box= explicitly")
    return rows[0], rows[-1], cols[0], cols[-1]


def receptive_field(probe, params, layer: str, shape, *, key, n: int = 4) -> tuple:
    """(size (ph, pw), origin (oy, ox), stride (sy, sx)) of `layer`'s units in the input:
    unit (y, x) sees rows oy + y * sy .. + ph - 1 (columns likewise), clipped at the edges.

    shape: one image (H, W, C); n random uniform inputs in the probe's input range.
    """
    lo, hi = probe.input_range or (0.0, 1.0)
    x = lo + (hi - lo) * jax.random.uniform(key, (positive_int(n, "n"),) + tuple(shape))
    lshape = probe.layer_shapes((1,) + tuple(shape))[layer]
    if len(lshape) != 4:
        return tuple(shape[:2]), (0, 0), (0, 0)
    yc, xc = lshape[1] // 2, lshape[2] // 2
    r0, r1, c0, c1 = _box(probe, params, layer, x, yc, xc)
    sy = sx = 0
    if lshape[1] > 1 and lshape[2] > 1:
        q0, _, d0, _ = _box(probe, params, layer, x, yc - 1, xc - 1)
        sy, sx = r0 - q0, c0 - d0
    size = (int(max(r1 - r0 + 1, sy)), int(max(c1 - c0 + 1, sx)))
    return size, (int(r0 - yc * sy), int(c0 - xc * sx)), (int(sy), int(sx))


def top_patches(probe, params, images, layer: str, *, k: int = 4, channels=None,
                key=None, batch_size: int = 256) -> Patches:
    """The k images that drive each channel of `layer` hardest, cropped to the receptive field.

    images: (N, H, W, C) the data set; channels: a subset (default all); key: for
    `receptive_field`'s random inputs (default jax.random.key(0)).
    """
    images = np.asarray(images, np.float32)
    k = positive_int(k, "k")
    if images.ndim != 4 or len(images) < k:
        raise ValueError(f"images must be (N, H, W, C) with N >= k={k}; got {images.shape}")
    key = jax.random.key(0) if key is None else key
    (ph, pw), (oy, ox), (sy, sx) = receptive_field(probe, params, layer, images.shape[1:],
                                                   key=key)
    value, where = _channel_maxima(probe, params, images, layer, batch_size)
    chans = np.arange(value.shape[1]) if channels is None else np.asarray(channels, int)
    top = np.argsort(-value[:, chans], axis=0, kind="stable")[:k].T  # (C, k)
    yx = where[top, chans[:, None]]                                   # (C, k, 2)
    lo = probe.input_range[0] if probe.input_range else float(images.min())
    padded = np.pad(images, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=lo)
    cut = lambda i, y, x: padded[i, ph + oy + y * sy:ph + oy + y * sy + ph,  # noqa: E731
                                 pw + ox + x * sx:pw + ox + x * sx + pw]
    patches = np.stack([[cut(i, y, x) for i, (y, x) in zip(ti, tyx)]
                        for ti, tyx in zip(top, yx)])
    return Patches(patches, top, yx, np.take_along_axis(value[:, chans], top.T, 0).T,
                   (ph, pw))


def _channel_maxima(probe, params, images, layer, batch_size):
    """(N, C) each image's largest activation per channel, (N, C, 2) its position."""
    @jax.jit
    def one(x):
        a = probe.run(params, x)[1][layer]
        a = a.reshape(a.shape[0], 1, 1, a.shape[-1]) if a.ndim == 2 else a
        flat = a.reshape(a.shape[0], -1, a.shape[-1])
        arg = jnp.argmax(flat, axis=1)
        return flat.max(axis=1), jnp.stack([arg // a.shape[2], arg % a.shape[2]], axis=-1)
    parts = [one(jnp.asarray(images[i:i + batch_size]))
             for i in range(0, len(images), positive_int(batch_size, "batch_size"))]
    return (np.concatenate([np.asarray(p[0]) for p in parts]),
            np.concatenate([np.asarray(p[1]) for p in parts]))
