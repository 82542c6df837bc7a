"""Lucid's transformation robustness for fixed-size models, with explicit PRNG keys.

    t = standard_transforms((H, W))          # pad 12 -> jitter 8 -> scale -> rotate
    seen = t(key, image)                     #   -> jitter 4 -> resize to (H, W)

Lucid's default list is pad(12, constant 0.5), jitter(8), random_scale(0.9 .. 1.1 in steps of
0.02), random_rotate(-10 .. 10 degrees, 0 five times more often), jitter(4). Lucid feeds the
resized-and-rotated image to a model of any input size; here the model's input size is
fixed, so (as Lucent's `fixed_image_size`) the last step resizes bilinearly (corners
aligned) to (H, W), and the random scale zooms about the centre at a constant size (a
traced program needs static shapes). Same key, same transform: a unit's transforms are a
function of its key and the step.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxviz.maximize import image as image_lib

LUCID_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
LUCID_DEGREES = tuple(float(d) for d in list(range(-10, 11)) + 5 * [0])


@dataclass(frozen=True)
class Shrink:
    """Lucid's jitter: a random window d pixels smaller on each axis (offsets 0..d)."""
    d: int

    def __call__(self, key, x):
        h, w, c = x.shape
        if self.d >= min(h, w):
            raise ValueError(f"jitter {self.d} leaves nothing of a {h}x{w} image")
        off = jax.random.randint(key, (2,), 0, self.d + 1)
        return jax.lax.dynamic_slice(x, (off[0], off[1], 0), (h - self.d, w - self.d, c))


@dataclass(frozen=True)
class Resize:
    """Bilinear resize to (h, w) with corners aligned (torch Upsample(align_corners=True))."""
    h: int
    w: int

    def __call__(self, key, x):
        ys = jnp.linspace(0.0, x.shape[0] - 1.0, self.h)
        xs = jnp.linspace(0.0, x.shape[1] - 1.0, self.w)
        yy, xx = jnp.meshgrid(ys, xs, indexing="ij")
        sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [yy, xx], order=1)
        return jax.vmap(sample, in_axes=2, out_axes=2)(x)


def shrink(d: int) -> Shrink:
    """A random crop d pixels smaller on each axis (Lucid's jitter)."""
    return Shrink(image_lib._nonneg_int(d, "jitter d"))


def resize(h: int, w: int) -> Resize:
    """Bilinear resize to (h, w), corners aligned."""
    return Resize(image_lib._nonneg_int(h, "resize h"), image_lib._nonneg_int(w, "resize w"))


def standard_transforms(size, *, pad: int = 12, jitter: int = 8, scales=LUCID_SCALES,
                        degrees=LUCID_DEGREES, jitter2: int = 4, fill: float = 0.5):
    """Lucid's default robustness ending at the model's input size (module docstring).

    Args:
      size: (H, W) the model takes.
      pad, jitter, jitter2: pixels (Lucid: 12, 8, 4 on 128-224 pixel images; smaller
        images want smaller numbers, e.g. 3, 2, 1 on 28x28).
      scales, degrees: the values the random zoom and rotation draw from uniformly.
      fill: the padding's value, in the model's input units (Lucid: 0.5 of [0, 1]).
    Returns a `Chain` `(key, image (H, W, C)) -> image (H, W, C)`.
    """
    h, w = (image_lib._nonneg_int(v, "size") for v in size)
    steps = [image_lib.pad(pad, fill)]
    if jitter:
        steps.append(shrink(jitter))
    steps.append(image_lib.Affine(image_lib._values(scales, "scales"),
                                  image_lib._values(degrees, "degrees")))
    if jitter2:
        steps.append(shrink(jitter2))
    steps.append(resize(h, w))
    return image_lib.chain(*steps)
