"""Image parametrizations, regularizers and input transforms for activation maximization.

Each is a factory returning a small frozen dataclass that is a pure function. Equal settings
give equal (hashable) values, so the jitted ascent is reused rather than retraced when a
call builds `total_variation(0.1)` anew. All work on one image (H, W, C), any C.

- parametrization: `init(key) -> p` and `p -> image (H, W, C)` inside input_range;
- regularizer: `image -> penalty` (a scalar subtracted from the objective);
- transform: `(key, image) -> image`, applied before the model sees the image; `chain`
  composes them like `optax.chain`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


def _squash(z, lo, hi, squash):
    if squash == "sigmoid":
        return lo + (hi - lo) * jax.nn.sigmoid(z)
    return jnp.clip(z, lo, hi)


def _check_squash(squash):
    if squash not in ("sigmoid", "clip"):
        raise ValueError(f"squash must be 'sigmoid' or 'clip'; got {squash!r}")


@dataclass(frozen=True)
class Pixels:
    """Raw pixels. sigmoid: p are logits around 0 (mid-range); clip: p are pixel values."""
    shape: tuple
    lo: float = 0.0
    hi: float = 1.0
    squash: str = "sigmoid"
    std: float = 0.01

    def init(self, key):
        z = self.std * jax.random.normal(key, self.shape)
        return z if self.squash == "sigmoid" else 0.5 * (self.lo + self.hi) + (self.hi - self.lo) * z

    def __call__(self, p):
        return _squash(p, self.lo, self.hi, self.squash)


@dataclass(frozen=True)
class Fourier:
    """A real-FFT spectrum scaled by 1/f^decay, so Adam's steps favour low frequencies.

    p: (2, H, W//2 + 1, C), real and imaginary parts.
    """
    shape: tuple
    lo: float = 0.0
    hi: float = 1.0
    squash: str = "sigmoid"
    std: float = 0.01
    decay: float = 1.0

    def _scale(self):
        h, w, _ = self.shape
        f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
        return (1.0 / np.maximum(f, 1.0 / max(h, w)) ** self.decay)[..., None].astype(np.float32)

    def init(self, key):
        h, w, c = self.shape
        return self.std * jax.random.normal(key, (2, h, w // 2 + 1, c))

    def __call__(self, p):
        h, w, _ = self.shape
        spec = (p[0] + 1j * p[1]) * self._scale()
        z = jnp.fft.irfft2(spec, s=(h, w), axes=(0, 1), norm="ortho")
        return _squash(z, self.lo, self.hi, self.squash)


PARAMS = ("pixel", "fourier", "lucid", "lucid-pixel", "cppn")


def parametrization(kind: str, shape, input_range, squash: str = "sigmoid", colour=None):
    """A parametrization of images `shape` in `input_range`, by name.

    kind: "pixel", "fourier" (squashed by `squash`); "lucid" (Lucid's decorrelated Fourier
      image, fourier.DecorrelatedFourier), "lucid-pixel" (decorrelated pixels), "cppn"
      (cppn.CPPN); these three always end in a sigmoid.
    colour: the (C, C) colour basis of "lucid" and "lucid-pixel" (colour.colour_sqrt(data),
      colour.IMAGENET); default colour.default_basis(C): ImageNet's for 3 channels.
    """
    from jaxviz.maximize import colour as colour_lib, cppn, fourier  # noqa: PLC0415

    _check_squash(squash)
    lo, hi = input_range
    shape = tuple(shape)
    if kind in ("lucid", "lucid-pixel"):
        basis = fourier.check_basis(colour_lib.default_basis(shape[2]) if colour is None
                                    else colour, shape[2])
        cls = fourier.DecorrelatedFourier if kind == "lucid" else fourier.DecorrelatedPixels
        return cls(shape, lo, hi, basis)
    if colour is not None:
        raise ValueError(f"colour is used by param='lucid' or 'lucid-pixel' only; got "
                         f"param={kind!r}")
    if kind == "pixel":
        return Pixels(shape, lo, hi, squash)
    if kind == "fourier":
        return Fourier(shape, lo, hi, squash)
    if kind == "cppn":
        return cppn.CPPN(shape, lo, hi)
    raise ValueError(f"param must be 'pixel' or 'fourier', Lucid's 'lucid', 'lucid-pixel' or "
                     f"'cppn', or a parametrization object; got {kind!r}")


# ---- regularizers: image (H, W, C) -> scalar penalty --------------------------------------

def _weight(w):
    if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
        raise ValueError(f"weight must be a finite number >= 0; got {w!r}")
    return float(w)


@dataclass(frozen=True)
class LpNorm:
    weight: float
    p: float

    def __call__(self, x):
        return self.weight * jnp.mean(jnp.abs(x) ** self.p) ** (1.0 / self.p)


@dataclass(frozen=True)
class TotalVariation:
    weight: float
    beta: float

    def __call__(self, x):
        dy = x[1:, :-1] - x[:-1, :-1]
        dx = x[:-1, 1:] - x[:-1, :-1]
        # the epsilon keeps the gradient finite at flat regions when beta < 2
        return self.weight * jnp.mean((dy ** 2 + dx ** 2 + 1e-8) ** (self.beta / 2))


@dataclass(frozen=True)
class Blur:
    weight: float

    def __call__(self, x):
        # pulls each pixel towards its (fixed) 3x3 binomial blur: a penalty form of
        # "blur the image every step"
        return self.weight * 0.5 * jnp.mean((x - jax.lax.stop_gradient(blur3(x))) ** 2)


def blur3(x):
    """3x3 binomial blur of (H, W, C) with edge padding."""
    k = jnp.array([0.25, 0.5, 0.25], x.dtype)
    xp = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    x = k[0] * xp[:-2] + k[1] * xp[1:-1] + k[2] * xp[2:]
    return k[0] * x[:, :-2] + k[1] * x[:, 1:-1] + k[2] * x[:, 2:]


def lp_norm(weight: float = 1.0, p: float = 6.0) -> LpNorm:
    """weight * (mean |x|^p)^(1/p): keeps pixel values small (keras-vis uses p = 6)."""
    if not isinstance(p, (int, float)) or p < 1:
        raise ValueError(f"p must be a number >= 1; got {p!r}")
    return LpNorm(_weight(weight), float(p))


def total_variation(weight: float = 1.0, beta: float = 2.0) -> TotalVariation:
    """weight * mean((dx^2 + dy^2)^(beta/2)): favours smooth images (keras-vis beta = 2)."""
    if not isinstance(beta, (int, float)) or beta <= 0:
        raise ValueError(f"beta must be a number > 0; got {beta!r}")
    return TotalVariation(_weight(weight), float(beta))


def blur(weight: float = 1.0) -> Blur:
    """Penalty pulling the image towards its own 3x3 blur (removes high frequencies)."""
    return Blur(_weight(weight))


def decay(weight: float = 1.0) -> LpNorm:
    """L2 decay, weight * sqrt(mean x^2)."""
    return LpNorm(_weight(weight), 2.0)


# ---- transforms: (key, image (H, W, C)) -> image ------------------------------------------

@dataclass(frozen=True)
class Jitter:
    d: int

    def __call__(self, key, x):
        h, w, _ = x.shape
        off = jax.random.randint(key, (2,), 0, 2 * self.d + 1)
        xp = jnp.pad(x, ((self.d, self.d), (self.d, self.d), (0, 0)), mode="edge")
        return jax.lax.dynamic_slice(xp, (off[0], off[1], 0), x.shape)


@dataclass(frozen=True)
class Pad:
    n: int
    value: float

    def __call__(self, key, x):
        return jnp.pad(x, ((self.n, self.n), (self.n, self.n), (0, 0)), constant_values=self.value)


@dataclass(frozen=True)
class Crop:
    """A random (h, w) window: after `pad`, a translation with a constant border."""
    h: int
    w: int

    def __call__(self, key, x):
        if x.shape[0] < self.h or x.shape[1] < self.w:
            raise ValueError(f"crop ({self.h}, {self.w}) is larger than the image {x.shape}")
        oy = jax.random.randint(key, (), 0, x.shape[0] - self.h + 1)
        ox = jax.random.randint(jax.random.fold_in(key, 1), (), 0, x.shape[1] - self.w + 1)
        return jax.lax.dynamic_slice(x, (oy, ox, 0), (self.h, self.w, x.shape[2]))


@dataclass(frozen=True)
class Affine:
    """Zoom by a random factor from `scales`, then rotate by a random angle from `degrees`."""
    scales: tuple
    degrees: tuple

    def __call__(self, key, x):
        ks, kr = jax.random.split(key)
        s = jax.random.choice(ks, jnp.asarray(self.scales, jnp.float32))
        t = jnp.deg2rad(jax.random.choice(kr, jnp.asarray(self.degrees, jnp.float32)))
        h, w, _ = x.shape
        cy, cx = (h - 1) / 2, (w - 1) / 2
        yy, xx = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
        # inverse map: where each output pixel samples the input
        sy = cy + (jnp.cos(t) * yy - jnp.sin(t) * xx) / s
        sx = cx + (jnp.sin(t) * yy + jnp.cos(t) * xx) / s
        sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [sy, sx], order=1, mode="nearest")
        return jax.vmap(sample, in_axes=2, out_axes=2)(x)


@dataclass(frozen=True)
class Chain:
    transforms: tuple

    def __call__(self, key, x):
        for i, t in enumerate(self.transforms):
            x = t(jax.random.fold_in(key, i), x)
        return x


def _nonneg_int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name} must be an int >= 0; got {v!r}")
    return int(v)


def _values(v, name):
    vals = tuple(float(a) for a in np.atleast_1d(np.asarray(v, np.float64)))
    if not vals or not all(math.isfinite(a) for a in vals):
        raise ValueError(f"{name} must be one or more finite numbers; got {v!r}")
    return vals


def jitter(d: int) -> Jitter:
    """Random translation by up to d pixels each way; same shape, edge pixels repeated."""
    return Jitter(_nonneg_int(d, "jitter d"))


def pad(n: int, value: float = 0.0) -> Pad:
    """Grow the image by n pixels of `value` on every side (follow with `crop` for fixed-size models)."""
    return Pad(_nonneg_int(n, "pad n"), float(value))


def crop(h: int, w: int) -> Crop:
    """A random h x w window of the image."""
    return Crop(_nonneg_int(h, "crop h"), _nonneg_int(w, "crop w"))


def scale(factors=(0.9, 0.95, 1.0, 1.05, 1.1)) -> Affine:
    """Random zoom about the centre by one of `factors`; same shape."""
    f = _values(factors, "scale factors")
    if min(f) <= 0:
        raise ValueError(f"scale factors must be > 0; got {factors!r}")
    return Affine(f, (0.0,))


def rotate(degrees=(-10, -5, 0, 5, 10)) -> Affine:
    """Random rotation about the centre by one of `degrees`; same shape."""
    return Affine((1.0,), _values(degrees, "rotate degrees"))


def chain(*transforms) -> Chain:
    """Apply transforms in order, each with its own key (like optax.chain)."""
    flat = []
    for t in transforms:
        if not callable(t):
            raise TypeError(f"transforms must be callables (key, image) -> image; got {t!r}")
        flat.extend(t.transforms if isinstance(t, Chain) else (t,))
    return Chain(tuple(flat))
