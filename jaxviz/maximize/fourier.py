"""Lucid's decorrelated parametrizations: a Fourier spectrum scaled by 1/f (or pixels), in
decorrelated colours, squashed by a sigmoid into the input range.

    param = DecorrelatedFourier((H, W, C), lo, hi, colour.IMAGENET)
    p = param.init(key)      # (2, H, W // 2 + 1, C): real and imaginary parts, N(0, sd^2)
    image = param(p)         # (H, W, C) in (lo, hi)

image = lo + (hi - lo) * sigmoid(decorrelate(irfft2(p * scale, norm="ortho") / 4)), with
scale = 1 / max(f, 1 / max(H, W)) ** decay and f the frequency (cycles per pixel): Lucid's
spectrum scaling, its orthonormal inverse FFT and its constant 4 ("magic" in Lucent, which
lowers saturation). Each coefficient's step is scaled so that Adam favours low frequencies
the way natural images do.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.maximize import colour as colour_lib

MAGIC = 4.0  # Lucid divides the inverse FFT by 4 (Lucent: "reduces saturation")


def frequencies(h: int, w: int) -> np.ndarray:
    """(h, w // 2 + 1) |frequency| of each real-FFT coefficient, in cycles per pixel."""
    return np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> np.ndarray:
    """(h, w // 2 + 1) float32: 1 / max(f, 1 / max(h, w)) ** decay, Lucid's scaling."""
    return (1.0 / np.maximum(frequencies(h, w), 1.0 / max(h, w)) ** decay).astype(np.float32)


def _to_range(z, lo, hi, basis):
    return lo + (hi - lo) * jax.nn.sigmoid(colour_lib.decorrelate(z, basis))


@dataclass(frozen=True)
class DecorrelatedFourier:
    """Lucid's default image: a 1/f-scaled spectrum in decorrelated colours (module doc).

    shape: (H, W, C); colour: a (C, C) basis (colour.IMAGENET, colour.colour_sqrt(data),
    colour.identity(C)); decay: the spectrum's power (1 in Lucid); sd: the init's std.
    """
    shape: tuple
    lo: float = 0.0
    hi: float = 1.0
    colour: tuple = colour_lib.IMAGENET
    decay: float = 1.0
    sd: float = 0.01

    def init(self, key):
        h, w, c = self.shape
        return self.sd * jax.random.normal(key, (2, h, w // 2 + 1, c))

    def __call__(self, p):
        h, w, _ = self.shape
        spec = (p[0] + 1j * p[1]) * spectrum_scale(h, w, self.decay)[..., None]
        z = jnp.fft.irfft2(spec, s=(h, w), axes=(0, 1), norm="ortho") / MAGIC
        return _to_range(z, self.lo, self.hi, self.colour)


@dataclass(frozen=True)
class DecorrelatedPixels:
    """Pixels in decorrelated colours, then a sigmoid (Lucid's image(fft=False)).
    p: (H, W, C) ~ N(0, sd^2)."""
    shape: tuple
    lo: float = 0.0
    hi: float = 1.0
    colour: tuple = colour_lib.IMAGENET
    sd: float = 0.01

    def init(self, key):
        return self.sd * jax.random.normal(key, self.shape)

    def __call__(self, p):
        return _to_range(p, self.lo, self.hi, self.colour)


def check_basis(basis, channels: int) -> tuple:
    """basis as a hashable (C, C) tuple, or a ValueError naming `colour`."""
    m = np.asarray(basis, np.float64)
    if m.shape != (channels, channels) or not np.all(np.isfinite(m)) or not np.any(m):
        raise ValueError(f"colour must be a finite, nonzero ({channels}, {channels}) matrix for "
                         f"{channels}-channel images (colour.colour_sqrt(images), "
                         f"colour.IMAGENET); got shape {m.shape}")
    return tuple(tuple(float(v) for v in row) for row in m)
