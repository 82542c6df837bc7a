"""KernelSHAP and LIME: a weighted linear surrogate fitted, in JAX and batched over images,
to the model's scores on randomly perturbed copies of each image.

    res = kernel_shap(fn, params, x, y, key=key, n_samples=500)   # res.map: (N, H, W)
    res = lime(fn, params, x, y, key=key, n_samples=500)          # an Attribution

Both perturb the features of `perturbation` (a feature mask or a grid; x_z keeps the
features with z = 1 and puts the baseline in the others), evaluate every sample as a
batched forward pass (`chunk_size` perturbed copies of the batch at once), then fit
score(x_z) ~ intercept + z . coef per image and return coef on the pixels. Definitions are
Captum's:

- KernelSHAP (Lundberg & Lee 2017): the first two samples are all features and none,
  weighted 1e6; the others draw a size k in 1..F-1 with probability proportional to
  (F - 1) / (k (F - k)), then k features uniformly, each weighted 1 (the Shapley kernel,
  sampled); unregularised weighted least squares. The two 1e6-weighted samples act as
  constraints (intercept = score(baseline), intercept + sum(coef) = score(x)); we impose
  them exactly, the limit of Captum's fit as that weight grows (a difference of order 1e-6
  of the scores, where float32 least squares with 1e6 weights would lose the other
  samples), and take the minimum-norm coef when underdetermined. With enough samples
  coef -> the Shapley values of the F features; they always sum to score(x) - score(b).
- LIME (Ribeiro et al. 2016): z ~ Bernoulli(0.5) per feature; weight
  exp(-d^2 / (2 kernel_width^2)), d the cosine (or euclidean) distance between the
  flattened image and its perturbed copy; Lasso with sklearn's objective,
  1/2 sum_s w_s r_s^2 / sum_s w_s + alpha |coef|_1 (alpha=0.01 is Captum's default;
  alpha=0 gives weighted least squares), solved by FISTA for `lasso_steps` steps.

Randomness: `key`, one PRNG key or one per image; image i's samples come from its key.
Memory: the binary samples, n_samples x N x F booleans, are kept for the fit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxviz.attribution import perturbation as pert
from jaxviz.core import analysis, checks
from jaxviz.core import method as method_lib
from jaxviz.core.result import Attribution, attribution_method, lime_cause

DISTANCES = ("cosine", "euclidean")


def _centred(z, y, w):
    """Weighted means removed and sqrt(weight) applied: the intercept drops out."""
    wn = w / w.sum()
    zm, ym = wn @ z, wn @ y
    sw = jnp.sqrt(wn)
    return (z - zm) * sw[:, None], (y - ym) * sw, zm, ym


def min_norm_lstsq(a, r, rtol: float = 1e-6):
    """The minimum-norm least-squares solution of a c = r, a: (S, F), through the
    eigendecomposition of the (F, F) Gram matrix: F is small, and XLA CPU's batched SVD
    (what pinv uses) is many times slower. Eigenvalues below rtol x the largest (the
    squared singular values at float32 noise) count as zero."""
    evals, evecs = jnp.linalg.eigh(a.T @ a)
    keep = evals > rtol * evals[-1]
    inv = jnp.where(keep, 1 / jnp.where(keep, evals, 1), 0)
    return evecs @ (inv * (evecs.T @ (a.T @ r)))


def lasso_fista(a, r, alpha, steps: int):
    """argmin_c 1/2 |r - a c|^2 + alpha |c|_1 by FISTA (Beck & Teboulle 2009). a: (S, F)."""
    gram, corr = a.T @ a, a.T @ r
    lip = jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-12)

    def step(_, state):
        c, v, k = state
        u = v - (gram @ v - corr) / lip
        c_new = jnp.sign(u) * jnp.maximum(jnp.abs(u) - alpha / lip, 0)
        k_new = (1 + jnp.sqrt(1 + 4 * k * k)) / 2
        return c_new, c_new + (k - 1) / k_new * (c_new - c), k_new

    zeros = jnp.zeros(a.shape[1], a.dtype)
    return jax.lax.fori_loop(0, steps, step, (zeros, zeros, jnp.ones((), a.dtype)))[0]


def fit_linear(z, y, w, alpha: float = 0.0, lasso_steps: int = 1000):
    """Weighted linear fit y ~ intercept + z . coef with an unpenalised intercept.

    z: (S, F), y: (S,), w: (S,) >= 0 -> (coef (F,), intercept ()). alpha == 0: least
    squares (minimum-norm coef when underdetermined); alpha > 0: Lasso (see module doc)."""
    a, r, zm, ym = _centred(z.astype(jnp.float32), y, w)
    coef = min_norm_lstsq(a, r) if alpha == 0 else lasso_fista(a, r, alpha, lasso_steps)
    return coef, ym - zm @ coef


def kernel_shap_samples(u, n_features: int) -> jax.Array:
    """KernelSHAP coalitions from uniforms u (S, F + 1): (S + 2, F) bool, rows 0 and 1 all
    features and none, then a size by inverse CDF and the first `size` of a random order."""
    f = n_features
    sizes = jnp.arange(1, f)
    cdf = jnp.cumsum((f - 1) / (sizes * (f - sizes)))
    size = 1 + jnp.minimum(jnp.searchsorted(cdf, u[:, 0] * cdf[-1]), f - 2)
    rest = jnp.argsort(jnp.argsort(u[:, 1:], axis=-1), axis=-1) < size[:, None]
    return jnp.concatenate([jnp.ones((1, f), bool), jnp.zeros((1, f), bool), rest])


def fit_efficient(z, y, y_none, y_all):
    """Least squares y ~ y_none + z . coef subject to sum(coef) = y_all - y_none, the
    minimum-norm solution. z: (S, F) samples other than all/none, y: (S,) -> coef (F,).

    coef = delta / F + c with c orthogonal to the ones vector: z c = y - y_none - z.1 delta/F,
    and z c = (z - row means) c for such c, the minimum-norm solution of that system."""
    z = z.astype(jnp.float32)
    f = z.shape[1]
    delta = y_all - y_none
    r = y - y_none - z.sum(1) * delta / f
    if z.shape[0] == 0:
        return jnp.full((f,), delta / f)
    return delta / f + min_norm_lstsq(z - z.mean(1, keepdims=True), r)


def lime_weights(x, b, masks, z, n_features, distance, kernel_width):
    """exp(-d^2 / (2 width^2)), d between each image and its perturbed copies, from
    per-feature sums (no perturbed image is built). z: (S, N, F) -> (S, N)."""
    def per_feature(v):  # (N, H, W, C) -> (N, F) sums over each feature's pixels
        ids = jnp.broadcast_to(masks, v.shape[:3]).reshape(v.shape[0], -1)
        return jax.vmap(lambda i, s: jax.ops.segment_sum(s, i, n_features))(
            ids, v.sum(-1).reshape(v.shape[0], -1))
    zf = z.astype(jnp.float32)
    if distance == "euclidean":
        d2 = ((1 - zf) * per_feature((x - b) ** 2)).sum(-1)
    else:  # torch's CosineSimilarity: dot / max(|x| |x_z|, 1e-8)
        xx, xb, bb = per_feature(x * x), per_feature(x * b), per_feature(b * b)
        dot = (zf * xx + (1 - zf) * xb).sum(-1)
        norm_z = jnp.sqrt((zf * xx + (1 - zf) * bb).sum(-1))
        d2 = (1 - dot / jnp.maximum(jnp.sqrt(xx.sum(-1)) * norm_z, 1e-8)) ** 2
    return jnp.exp(-d2 / (2 * kernel_width ** 2))


def _surrogate(fn, params, x, t, b, masks, keys, *, method, n_features, n_samples, distance,
               kernel_width, alpha, lasso_steps, chunk_size):
    n = x.shape[0]
    if method == "kernel_shap":
        u = pert.image_draws(keys, (n_samples - 2) * (n_features + 1))
        z = jax.vmap(lambda ui: kernel_shap_samples(ui.reshape(n_samples - 2, -1), n_features)
                     )(u)[:, :n_samples]
    else:  # LIME: each feature kept with p = 0.5
        z = pert.image_draws(keys, n_samples * n_features).reshape(n, n_samples, -1) < 0.5
    z = jnp.swapaxes(z, 0, 1)  # (S, N, F)
    ys = pert.sample_scores(fn, params, x, b, t, masks, lambda zs: zs, z, chunk_size)
    if method == "kernel_shap":
        coef = jax.vmap(fit_efficient, in_axes=(1, 1, 0, 0))(z[2:], ys[2:], ys[1], ys[0])
    else:
        w = lime_weights(x, b, masks, z, n_features, distance, kernel_width)
        coef, _ = jax.vmap(lambda zi, yi, wi: fit_linear(zi, yi, wi, alpha, lasso_steps),
                           in_axes=1)(z, ys, w)
    return Attribution(pert.to_pixels(coef, masks))


def _run(method, fn, params, x, t, key, n_samples, feature_mask, grid, baselines,
         chunk_size, **fit):
    n_samples = checks.positive_int(n_samples, "n_samples", 2)
    b, masks, f, chunk = pert.prepare(fn, params, x, baselines, feature_mask, grid,
                                      chunk_size, lambda _: n_samples)
    if f < 2:
        raise ValueError(f"{method} needs at least 2 features; the feature mask has {f}")
    keys = analysis.image_keys(key, x.shape[0])
    return method_lib.run(_surrogate, fn, params, x, t, kind="forward", b=b, masks=masks,
                          keys=keys, method=method, n_features=f, n_samples=n_samples,
                          chunk_size=chunk, **fit)


@attribution_method("kernel_shap", targets=method_lib.PERTURBATION)
def kernel_shap(fn, params, images, target, *, key, n_samples: int = 500, feature_mask=None,
                grid=None, baselines=0.0, score: str = "logit",
                chunk_size: int | None = None) -> Attribution:
    """KernelSHAP (Captum's KernelShap; see the module docstring). -> map (N, H, W).

    n_samples: coalitions per image (>= 2, counting the all and none samples; use more
    than the number of features F). Other options as `perturbation.feature_ablation`."""
    return _run("kernel_shap", fn, params, images, target, key, n_samples, feature_mask,
                grid, baselines, chunk_size, distance="cosine", kernel_width=1.0,
                alpha=0.0, lasso_steps=0)


@attribution_method("lime", lime_cause, targets=method_lib.PERTURBATION)
def lime(fn, params, images, target, *, key, n_samples: int = 500, feature_mask=None,
         grid=None, baselines=0.0, kernel_width: float = 1.0, distance: str = "cosine",
         alpha: float = 0.01, lasso_steps: int = 1000, score: str = "logit",
         chunk_size: int | None = None) -> Attribution:
    """LIME (Captum's Lime with its default kernel; see the module docstring). -> map
    (N, H, W); a map of zeros (alpha too large for the scores' scale) warns.

    kernel_width: the exponential kernel's width; distance: "cosine" or "euclidean";
    alpha: the Lasso penalty (0: weighted least squares); lasso_steps: FISTA iterations."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}")
    for name, v, least in (("kernel_width", kernel_width, "> 0"), ("alpha", alpha, ">= 0")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (
                name == "kernel_width" and v == 0):
            raise ValueError(f"{name} must be a number {least}; got {v!r}")
    return _run("lime", fn, params, images, target, key, n_samples, feature_mask, grid,
                baselines, chunk_size, distance=distance,
                kernel_width=float(kernel_width), alpha=float(alpha),
                lasso_steps=checks.positive_int(lasso_steps, "lasso_steps"))
