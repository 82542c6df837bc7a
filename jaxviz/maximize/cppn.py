"""A CPPN parametrization (Lucid's `param.cppn`): the image is a small per-pixel network of
the pixel's coordinates, so it is smooth at every scale and has no pixel grid of its own.

    param = CPPN((H, W, C))
    p = param.init(key)      # a list of (kernel (in, out), bias (out,)) per layer
    image = param(p)         # (H, W, C) in (lo, hi)

Coordinates span [-sqrt(3), sqrt(3)] on each axis; each hidden layer is a 1x1 convolution
(a dense layer per pixel) followed by Lucid's composite activation [atan(x) / 0.67,
atan(x)^2 / 0.6] (which doubles the channels); the output layer a sigmoid into the input
range. Kernels start ~ N(0, 1 / fan-in), biases at 0 and the output kernel at 0, so the
first image is uniform mid-range. Lucid optimises CPPNs with a smaller step than images
(Adam 0.005 rather than 0.05).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


def composite(x):
    """Lucid's composite activation: (..., n) -> (..., 2n)."""
    a = jnp.arctan(x)
    return jnp.concatenate([a / 0.67, a * a / 0.6], axis=-1)


def coordinates(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32: row and column coordinates in [-sqrt(3), sqrt(3)]."""
    r = 3 ** 0.5
    yy, xx = np.meshgrid(np.linspace(-r, r, h), np.linspace(-r, r, w), indexing="ij")
    return np.stack([yy, xx], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class CPPN:
    """shape: (H, W, C); hidden: channels per hidden layer; layers: 1x1 convolutions in all."""
    shape: tuple
    lo: float = 0.0
    hi: float = 1.0
    hidden: int = 24
    layers: int = 8

    def __post_init__(self):
        for name in ("hidden", "layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "layers" else 1):
                raise ValueError(f"CPPN {name} must be an int >= {2 if name == 'layers' else 1}; "
                                 f"got {v!r}")

    def init(self, key):
        c = self.shape[2]
        sizes = [2] + [2 * self.hidden] * (self.layers - 1)
        outs = [self.hidden] * (self.layers - 1) + [c]
        keys = jax.random.split(key, self.layers)
        p = [(jax.random.normal(k, (i, o)) * np.sqrt(1.0 / i), jnp.zeros(o))
             for k, i, o in zip(keys, sizes, outs)]
        p[-1] = (jnp.zeros_like(p[-1][0]), p[-1][1])
        return p

    def __call__(self, p):
        h, w, _ = self.shape
        x = jnp.asarray(coordinates(h, w))
        for kernel, bias in p[:-1]:
            x = composite(x @ kernel + bias)
        kernel, bias = p[-1]
        return self.lo + (self.hi - self.lo) * jax.nn.sigmoid(x @ kernel + bias)
