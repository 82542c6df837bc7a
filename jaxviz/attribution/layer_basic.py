"""One-pass and sampled methods at a layer, as Captum defines them: layer activation,
layer gradient x activation, layer GradientSHAP and layer feature ablation.

With A the layer's activation and S the target's score:

    layer activation            A(x)                                   (no target)
    layer gradient x activation A(x) * dS/dA at x
    layer GradientSHAP          mean over draws of (A(x + e) - A(b)) * dS/dA at
                                b + alpha (x + e - b): the gradient at the *input* path
                                point, as Captum's LayerGradientShap; draws as gradient_shap
    layer feature ablation      S(x) - S(x with the layer's group g set to its baseline),
                                each unit (or group of a layer_mask) in turn; only what
                                comes after the layer is rerun
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.attribution import expected_gradients as eg
from jaxviz.attribution import layer_core as core
from jaxviz.attribution.perturbation import chunked_sum, image_draws, map_chunks
from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core.result import Attribution, attribution_method


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("probe", "layer"))
def _activation(probe, params, x, layer):
    return core.activation(probe, params, x, layer)


@attribution_method("layer_activation")
def layer_activation(fn, params, images, target=None, *, layer: str) -> Attribution:
    """The layer's activation (Captum's LayerActivation). images (N, H, W, C) -> map shaped
    like `layer`'s activation. target is not used (any value is accepted)."""
    x = analysis.check_images(fn, params, images)
    core.check_layer(fn, layer, x.shape, "layer_activation")
    return Attribution(_activation(analysis.static_fn(fn), params, x, layer))


@functools.partial(compile_lib.jit, static_argnames=("probe", "layer", "node", "shape"))
def _gxa(probe, params, x, args, layer, node, shape):
    a, g = core.grad_and_act(probe, params, x, layer, node, args, shape)
    return a * g


@attribution_method("layer_gradient_x_activation")
def layer_gradient_x_activation(fn, params, images, target, *, layer: str) -> Attribution:
    """A * dS/dA at the layer (Captum's LayerGradientXActivation). images (N, H, W, C) ->
    map shaped like `layer`'s activation. target: class indices or an Objective."""
    c = core.prepare(fn, params, images, target, layer, "layer_gradient_x_activation")
    return core.finish(Attribution(_gxa(analysis.static_fn(fn), params, c.x, c.args, layer,
                                         c.node, c.shape)), c)


@functools.partial(compile_lib.jit, static_argnames=("probe", "layer", "node", "shape",
                                                     "n_samples", "chunk", "noisy"))
def _layer_shap(probe, params, x, args, bases, keys, stdevs, layer, node, shape, n_samples,
                chunk, noisy):
    n = x.shape[0]
    u = image_draws(keys, 2 * n_samples).reshape(n, n_samples, 2)  # gradient_shap's draws
    picks = jnp.minimum((u[..., 0] * bases.shape[0]).astype(jnp.int32), bases.shape[0] - 1)
    a_bases = core.activation(probe, params, bases, layer)
    size = int(np.prod(x.shape[1:]))

    def chunk_of(ids):  # draws ids (c,) of every image -> attr (c, N, ...), S(x + e) (c, N)
        k = len(ids)
        noise = jax.vmap(lambda s: jax.vmap(lambda key: jax.random.normal(
            jax.random.fold_in(key, s), (size,)))(keys))(ids)
        xs = (x + stdevs * noise.reshape((-1,) + x.shape)).reshape((-1,) + x.shape[1:])
        pick = picks[:, ids].T.reshape(-1)
        b = bases[pick]
        point = b + u[:, ids, 1].T.reshape(-1, 1, 1, 1) * (xs - b)
        g = core.grad_and_act(probe, params, point, layer, node, args,
                              (k * n,) + shape[1:], k)[1]
        fx, ax = core.run_scored(probe, params, xs, layer, node, args, k)
        attr = (ax - a_bases[pick]) * g
        return attr.reshape((k, n) + shape[1:]), fx.reshape(k, n)

    attr, f_noisy = chunked_sum(chunk_of, n_samples, chunk)
    per_base = core.score(node, args, *probe.run(params, bases[picks.T.reshape(-1)]),
                          n_samples)
    f_base = per_base.reshape(n_samples, n).mean(0)
    f_x = f_noisy / n_samples if noisy else core.run_scored(probe, params, x, layer, node,
                                                             args)[0]
    attr = attr / n_samples
    return attr, core.flat_sum(attr) - (f_x - f_base)


@attribution_method("layer_gradient_shap")
def layer_gradient_shap(fn, params, images, target, *, layer: str, key, baselines=None,
                        n_samples: int = 5, stdevs: float = 0.0,
                        chunk_size: int | None = None) -> Attribution:
    """Layer GradientSHAP (Captum's LayerGradientShap). images (N, H, W, C) -> Attribution:
    map shaped like `layer`'s activation, extras["delta"] (N,): the mean over draws of
    sum(attr_draw) - (S(x + e) - S(b)).

    The draws (baseline picks, path points, noise) are gradient_shap's for the same key:
    at a layer that is linear in the input (a first conv) the map sums to gradient_shap's.
    Options as gradient_shap (baselines: None, a number, (H, W, C) or (M, H, W, C)).
    """
    n_samples = checks.positive_int(n_samples, "n_samples")
    if isinstance(stdevs, bool) or not isinstance(stdevs, (int, float)) or stdevs < 0:
        raise ValueError(f"stdevs must be a number >= 0 (noise std in pixel units); "
                         f"got {stdevs!r}")
    c = core.prepare(fn, params, images, target, layer, "layer_gradient_shap")
    keys = analysis.image_keys(key, c.x.shape[0])
    chunk = analysis.default_chunk(analysis.check_chunk_size(chunk_size), fn, params,
                                   c.x.shape, n_samples)
    attr, delta = _layer_shap(analysis.static_fn(fn), params, c.x, c.args,
                              eg.baseline_set(baselines, c.x), keys, jnp.float32(stdevs),
                              layer, c.node, c.shape, n_samples, chunk, bool(stdevs > 0))
    return core.finish(Attribution(attr, {"delta": delta}), c)


def _layer_mask(layer_mask, shape, layer):
    """(mask broadcastable to the layer's shape (N, ...), number of groups G)."""
    if layer_mask is None:
        size = int(np.prod(shape[1:]))
        return jnp.arange(size, dtype=jnp.int32).reshape((1,) + shape[1:]), size
    m = np.asarray(layer_mask)
    if not np.issubdtype(m.dtype, np.integer) or m.ndim != len(shape):
        raise ValueError(f"layer_mask must be an int array of rank {len(shape)} broadcastable "
                         f"to layer {layer!r}'s shape {shape}; got {m.dtype} shape {m.shape}")
    try:
        np.broadcast_shapes(m.shape, shape)
    except ValueError:
        raise ValueError(f"layer_mask of shape {m.shape} does not broadcast to layer "
                         f"{layer!r}'s shape {shape}") from None
    if m.min() < 0:
        raise ValueError(f"layer_mask ids must be >= 0; got minimum {int(m.min())}")
    return jnp.asarray(m, jnp.int32), int(m.max()) + 1


@functools.partial(compile_lib.jit, kind="forward",
                   static_argnames=("probe", "layer", "node", "groups", "chunk"))
def _ablation(probe, params, x, args, mask, base, layer, node, groups, chunk):
    fx, a = core.run_scored(probe, params, x, layer, node, args)
    mask = jnp.broadcast_to(mask, a.shape)

    def drop(gs):  # group ids (c,) -> S with each group set to its baseline: (c, N)
        return jax.vmap(lambda g: core.tail_score(probe, params, x, layer, node, args,
                                                  jnp.where(mask == g, base, a)))(gs)
    scores = map_chunks(drop, jnp.arange(groups, dtype=jnp.int32), chunk)  # (G, N)
    diff = (fx[None] - scores).T  # (N, G)
    flat = mask.reshape(a.shape[0], -1)
    return jnp.take_along_axis(diff, flat, axis=1).reshape(a.shape)


@attribution_method("layer_feature_ablation")
def layer_feature_ablation(fn, params, images, target, *, layer: str, layer_baselines=0.0,
                           layer_mask=None, chunk_size: int | None = 64) -> Attribution:
    """Layer feature ablation (Captum's LayerFeatureAblation). images (N, H, W, C) -> map
    shaped like `layer`'s activation: for each group of units, S(x) - S with that group
    replaced by its baseline (every unit of the group gets the group's value).

    layer_baselines: a number or an array broadcastable to the layer's activation.
    layer_mask: int group ids >= 0 broadcastable to the activation (N, ...), e.g.
      (1, 1, 1, c) ids = one group per channel; None: every unit on its own.
    chunk_size: groups evaluated at once (each a run of the model after the layer).
    """
    c = core.prepare(fn, params, images, target, layer, "layer_feature_ablation")
    mask, groups = _layer_mask(layer_mask, c.shape, layer)
    base = jnp.asarray(layer_baselines, jnp.float32)
    try:
        np.broadcast_shapes(base.shape, c.shape)
    except ValueError:
        raise ValueError(f"layer_baselines of shape {base.shape} does not broadcast to layer "
                         f"{layer!r}'s shape {c.shape}") from None
    chunk = analysis.check_chunk_size(chunk_size)
    return core.finish(Attribution(_ablation(analysis.static_fn(fn), params, c.x, c.args,
                                              mask, base, layer, c.node, groups, chunk)), c)
