"""DeepLIFT (Shrikumar et al. 2017, rescale rule; reveal-cancel optional) and DeepLIFT-SHAP,
as Captum defines them.

    attr = (x - x0) * m,   m = DeepLIFT's multipliers (`deeplift_rules`), one backward pass
    delta = sum(attr) - (f(x) - f(x0))     summation-to-delta: zero up to float rounding

DeepLIFT-SHAP averages DeepLIFT over a set of baselines (Captum's DeepLiftShap; SHAP's
DeepExplainer with a background set): attr = mean_b (x - b) * m_b, and its delta is
sum(attr) - (f(x) - mean_b f(b)) (the mean of Captum's per-baseline deltas).

Every rule works on the traced program (no layer list): any model or apply_fn whose
input-dependent operations have a rule (`jaxviz.propagation.deeplift_rules`; the list is
docs/propagation_primitives.md); others raise an error naming the primitive and the layer.
An objective target (`neuron("conv2", 3)`, `channel`, `direction`, `class_logit`, sums
and scales) is explained instead of a logit: the multipliers start at its unit and
delta = sum(attr) - (s(x) - s(x0)) for its score s (`jaxviz.propagation.start`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz.attribution import integrated
from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core.result import Attribution, attribution_method
from jaxviz.propagation import deeplift_reveal, deeplift_rules, start


def multipliers(fn, params, x, b, t, rule="rescale"):
    """(attr, delta, f(x), f(b)) for one baseline per image, traced inline.

    x: (N, H, W, C); b: (N, H, W, C), or (1, H, W, C) for every image; t: (N,)
    -> attr (N, H, W, C), delta, f(x), f(b): (N,)."""
    model = compile_lib.fast_model(deeplift_rules.DeepLiftFn(fn, rule))

    def total(x):
        out, out0 = model(params, x, b)
        fx, fb = analysis.target_score(out, t), analysis.target_score(out0, t)
        return fx.sum(), (fx, fb)

    m, (fx, fb) = jax.grad(total, has_aux=True)(x)
    attr = (x - b) * m
    return attr, attr.sum(axis=(1, 2, 3)) - (fx - fb), fx, fb


@functools.partial(compile_lib.jit, static_argnames=("fn", "rule"))
def _deeplift(fn, params, x, b, t, rule):
    return multipliers(fn, params, x, b, t, rule)[:2]


def objective_multipliers(fn, node, params, x, b, args, rule="rescale"):
    """(attr, delta) of the objective (node, args) on fn's (logits, {layer: activation})
    (a `start.Readout`); x, b as in `multipliers`."""
    model = compile_lib.fast_model(deeplift_rules.DeepLiftFn(fn, rule))

    def total(x):
        out, out0 = model(params, x, b)
        fx, fb = start.score(node, args, out), start.score(node, args, out0)
        return fx.sum(), (fx, fb)

    m, (fx, fb) = jax.grad(total, has_aux=True)(x)
    attr = (x - b) * m
    return attr, attr.sum(axis=(1, 2, 3)) - (fx - fb)


@functools.partial(compile_lib.jit, static_argnames=("fn", "node", "rule"))
def _deeplift_objective(fn, node, params, x, b, args, rule):
    return objective_multipliers(fn, node, params, x, b, args, rule)


def _baseline(baselines, x, blur_sigma):
    """(1, H, W, C) when one baseline serves every image (its reference pass then runs
    on a batch of 1), else (N, H, W, C)."""
    one = (1,) + tuple(x.shape[1:])
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return jnp.full(one, baselines, jnp.float32)
    if baselines is None or (isinstance(baselines, str) and baselines == "zeros"):
        return jnp.zeros(one, jnp.float32)
    if not isinstance(baselines, str) and jnp.shape(baselines) == one:
        return jnp.asarray(baselines, jnp.float32)
    return integrated._baselines(baselines, x, blur_sigma)


@attribution_method("deeplift")
def deeplift(fn, params, images, target, *, baselines=None, blur_sigma: float = 5.0,
             rule: str = "rescale") -> Attribution:
    """DeepLIFT. images: (N, H, W, C) -> Attribution: map (N, H, W, C), extras["delta"]
    (N,) = sum(map) - (f(x) - f(baseline)).

    target: class indices (int or one per image), or an objective whose unit the
      multipliers start at: class_logit, neuron, channel, direction, sums and scales of
      these (others are refused, naming the objective).

    baselines: None or "zeros", "blur" (Gaussian blur of each image, std `blur_sigma` px),
      a number, or an array shaped like images (or (1, H, W, C)).
    rule: "rescale" (default) or "reveal_cancel" for the nonlinearities after conv/dense
      layers (Shrikumar et al. 2017, section 3.5.3; see `deeplift_reveal`).
    """
    _check_rule(rule)
    if start.is_objective(target):
        x = analysis.check_images(fn, params, images)
        s = start.resolve("deeplift", fn, params, x.shape, target)
        b = _baseline(baselines, x, blur_sigma)
        checks.warn_outside_range(b, x, "baselines")
        attr, delta = _deeplift_objective(start.Readout(analysis.static_fn(fn), s.layers),
                                          s.node, params, x, b, s.args, rule)
        return Attribution(attr, {"delta": delta})
    x, t = analysis.check_inputs(fn, params, images, target)
    b = _baseline(baselines, x, blur_sigma)
    checks.warn_outside_range(b, x, "baselines")
    attr, delta = _deeplift(analysis.static_fn(fn), params, x, b, t, rule)
    return Attribution(attr, {"delta": delta})


def _check_rule(rule):
    if not isinstance(rule, str) or rule not in deeplift_reveal.RULES:
        raise ValueError(f"rule must be one of {deeplift_reveal.RULES}; got {rule!r}")


@functools.partial(compile_lib.jit, static_argnames=("fn", "chunk", "rule"))
def _shap(fn, params, x, bs, t, chunk, rule):
    """bs: (B, N or 1, H, W, C) -> mean attribution (N, H, W, C), mean delta (N,)."""
    attr, delta = analysis.chunked(lambda b: multipliers(fn, params, x, b, t, rule)[:2], bs,
                                   chunk)
    return attr.mean(axis=0), delta.mean(axis=0)


@functools.partial(compile_lib.jit, static_argnames=("fn", "node", "chunk", "rule"))
def _shap_objective(fn, node, params, x, bs, args, chunk, rule):
    """_shap for an objective start: fn is a `start.Readout`."""
    attr, delta = analysis.chunked(
        lambda b: objective_multipliers(fn, node, params, x, b, args, rule), bs, chunk)
    return attr.mean(axis=0), delta.mean(axis=0)


@functools.partial(jax.jit, static_argnames=("n", "shape", "lo", "hi"))
def _draw(keys, n, shape, lo, hi):
    """n uniform baselines in [lo, hi) per image key: (N,) keys -> (n, N, *shape)."""
    draws = jax.vmap(lambda k: jax.random.uniform(k, (n, *shape), jnp.float32, lo, hi))(keys)
    return jnp.swapaxes(draws, 0, 1)


def _shap_baselines(fn, baselines, x, key, n_baselines):
    """(B, N, H, W, C) baselines, drawn (None) or per image (N, B, H, W, C), or
    (B, 1, H, W, C) for a set shared by every image (a number, (H, W, C), (B, H, W, C))."""
    n = x.shape[0]
    if baselines is None:
        n_baselines = checks.positive_int(n_baselines, "n_baselines")
        lo, hi = getattr(fn, "input_range", (0.0, 1.0))
        return _draw(analysis.image_keys(key, n), n_baselines, tuple(x.shape[1:]),
                     float(lo), float(hi))
    if jnp.ndim(baselines) == 5:
        b = jnp.asarray(baselines, jnp.float32)
        if b.shape[0] != n or b.shape[2:] != x.shape[1:]:
            raise ValueError(f"per-image baselines must be (N, B, H, W, C) with N, H, W, C "
                             f"of images {tuple(x.shape)}; got shape {tuple(b.shape)}")
        checks.warn_outside_range(b, x, "baselines")
        return jnp.swapaxes(b, 0, 1)
    b = jnp.asarray(baselines, jnp.float32)
    b = jnp.broadcast_to(b, x.shape[1:])[None] if b.ndim in (0, 3) else b
    if b.ndim != 4 or b.shape[1:] != x.shape[1:] or b.shape[0] < 1:
        raise ValueError(f"baselines must be None, a number, one image (H, W, C), a set "
                         f"(B, H, W, C) or per-image sets (N, B, H, W, C) for images "
                         f"{tuple(x.shape)}; got shape {tuple(b.shape)}")
    checks.warn_outside_range(b, x, "baselines")
    return b[:, None]  # (B, 1, H, W, C): each shared baseline's reference on a batch of 1


@attribution_method("deeplift_shap")
def deeplift_shap(fn, params, images, target, *, baselines=None, n_baselines: int = 16,
                  key=None, chunk_size: int | None = None, rule: str = "rescale") -> Attribution:
    """DeepLIFT-SHAP: DeepLIFT averaged over baselines. images (N, H, W, C) -> Attribution:
    map (N, H, W, C), extras["delta"] (N,) = sum(map) - (f(x) - mean_b f(b)).

    target: class indices or an objective, as in `deeplift`.

    baselines: a set for every image (a number, (H, W, C) or (B, H, W, C)), or
      (N, B, H, W, C) per image; None draws
      `n_baselines` images uniform in the model's input range (a Probe's `input_range`,
      else [0, 1)) from `key` (one PRNG key, or one per image).
    chunk_size: baselines evaluated at once (None: all that fit, core.analysis.default_chunk).
    rule: "rescale" (default) or "reveal_cancel", as in `deeplift`.
    """
    _check_rule(rule)
    chunk_size = analysis.check_chunk_size(chunk_size)
    if start.is_objective(target):
        x = analysis.check_images(fn, params, images)
        s = start.resolve("deeplift_shap", fn, params, x.shape, target)
    else:
        x, t = analysis.check_inputs(fn, params, images, target)
    bs = _shap_baselines(fn, baselines, x, key, n_baselines)
    chunk_size = analysis.default_chunk(chunk_size, fn, params, x.shape, len(bs))
    if start.is_objective(target):
        attr, delta = _shap_objective(start.Readout(analysis.static_fn(fn), s.layers), s.node,
                                      params, x, bs, s.args, chunk_size, rule)
    else:
        attr, delta = _shap(analysis.static_fn(fn), params, x, bs, t, chunk_size, rule)
    return Attribution(attr, {"delta": delta})
