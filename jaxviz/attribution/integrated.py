"""Integrated Gradients (Sundararajan et al. 2017) with Riemann and Gauss-Legendre paths.

    attr = (x - b) * sum_k w_k * grad f(b + a_k (x - b))
    delta = sum(attr) - (f(x) - f(b))      completeness: delta -> 0 as n_steps grows

Path points are vmapped, `chunk_size` of them at a time (a scan over chunks keeps
memory at one chunk's worth; None evaluates every step that fits at once, see
core.analysis.default_chunk).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks
from jaxviz.core import method as method_lib
from jaxviz.core.result import Attribution, attribution_method

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
           "riemann_trapezoid")


def path_weights(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points a_k in [0, 1] and weights w_k (sum 1) of the path integral's quadrature."""
    n = n_steps
    k = np.arange(n, dtype=np.float64)
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        a, w = (nodes + 1) / 2, w / 2
    elif method == "riemann_trapezoid":
        a = k / (n - 1)
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] /= 2
    else:
        a = {"riemann_left": k, "riemann_right": k + 1, "riemann_middle": k + 0.5}[method] / n
        w = np.full(n, 1.0 / n)
    return a.astype(np.float32), w.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("sigma",))
def blur_baseline(images: jax.Array, sigma: float = 5.0) -> jax.Array:
    """Gaussian blur of each image (std `sigma` pixels). (N, H, W, C) -> (N, H, W, C).

    Rows of the blur matrix are renormalised at the borders, so no padding value leaks in.
    """
    def matrix(n):
        d = np.arange(n)[:, None] - np.arange(n)[None, :]
        m = np.exp(-0.5 * (d / sigma) ** 2)
        return jnp.asarray(m / m.sum(1, keepdims=True), jnp.float32)
    x = jnp.einsum("ih,nhwc->niwc", matrix(images.shape[1]), images)
    return jnp.einsum("jw,niwc->nijc", matrix(images.shape[2]), x)


def _baselines(baselines, x, blur_sigma):
    if baselines is None or (isinstance(baselines, str) and baselines == "zeros"):
        return jnp.zeros_like(x)
    if isinstance(baselines, str):
        if baselines != "blur":
            raise ValueError(f"baselines must be None, 'zeros', 'blur', a number or an array "
                             f"shaped like images {tuple(x.shape)}; got {baselines!r}")
        return blur_baseline(x, float(blur_sigma))
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return jnp.full_like(x, baselines)
    b = jnp.asarray(baselines, jnp.float32)
    if b.shape not in (x.shape, (1,) + x.shape[1:]):
        raise ValueError(f"baselines must have the images' shape {tuple(x.shape)} or "
                         f"{(1,) + tuple(x.shape[1:])}; got shape {tuple(b.shape)}")
    return jnp.broadcast_to(b, x.shape)


def _ig(fn, params, x, t, b, *, method, n_steps, chunk):
    a, w = path_weights(method, n_steps)

    def grads(a_k):  # (c,) path points -> (c, N, H, W, C)
        return jax.vmap(lambda s: method_lib.input_grad(fn, params, b + s * (x - b), t))(a_k)

    if chunk is None or chunk >= n_steps:
        total = jnp.tensordot(w, grads(a), axes=1)
    else:
        pad = -n_steps % chunk  # padded points get weight 0
        a = np.concatenate([a, np.zeros(pad, np.float32)]).reshape(-1, chunk)
        w = np.concatenate([w, np.zeros(pad, np.float32)]).reshape(-1, chunk)

        def body(acc, aw):
            return acc + jnp.tensordot(aw[1], grads(aw[0]), axes=1), None
        total, _ = jax.lax.scan(body, jnp.zeros_like(x), (jnp.asarray(a), jnp.asarray(w)))
    attr = total * (x - b)
    fx, fb = method_lib.copy_scores(fn, params, jnp.stack([x, b]), t)
    return Attribution(attr, {"delta": attr.sum(axis=(1, 2, 3)) - (fx - fb)})


@attribution_method("integrated_gradients", targets=method_lib.GRADIENT)
def integrated_gradients(fn, params, images, target, *, baselines=None, n_steps: int = 50,
                         method: str = "gausslegendre", chunk_size: int | None = None,
                         blur_sigma: float = 5.0) -> Attribution:
    """Integrated Gradients. images: (N, H, W, C) -> Attribution: map (N, H, W, C),
    extras["delta"] (N,) = sum(map) - (f(x) - f(b)), the completeness gap, f the target's
    score (any target, `jaxviz.core.targets`; T targets: map (N, T, H, W, C), delta (N, T)).

    baselines: None or "zeros", "blur" (Gaussian blur of each image, std `blur_sigma` px),
      a number, or an array shaped like images (or (1, H, W, C)).
    method: one of METHODS. chunk_size: path points evaluated at once.
    """
    n_steps = checks.positive_int(n_steps, "n_steps")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if method == "riemann_trapezoid" and n_steps < 2:
        raise ValueError(f"n_steps must be >= 2 for riemann_trapezoid; got {n_steps}")
    chunk_size = analysis.check_chunk_size(chunk_size)
    if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)) or blur_sigma <= 0:
        raise ValueError(f"blur_sigma must be a number > 0 (pixels); got {blur_sigma!r}")
    x, t = images, target
    b = _baselines(baselines, x, blur_sigma)
    checks.warn_outside_range(b, x, "baselines")
    chunk_size = analysis.default_chunk(chunk_size, fn, params, x.shape, n_steps, t.count)
    return method_lib.run(_ig, fn, params, x, t, b=b, method=method, n_steps=n_steps,
                          chunk=chunk_size)
