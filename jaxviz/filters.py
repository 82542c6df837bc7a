"""Filters and feature maps: a conv layer's kernels as images, named layers' activations.

    tiles = filter_grid(probe, params, "conv1")                 # (32, 3, 3): input channel 0
    tiles = filter_grid(probe, params, "conv2", mode="mosaic")  # (16, 16, 3, 3): out x in
    acts = feature_maps(probe, params, x, ["conv1", "conv2"])   # {layer: (N, H, W, C)}

Kernels are 2-D convolution kernels (kh, kw, in, out), found by parameter name in the
layer arrays the model's adapter reports (`jaxviz.core.adapters.param_tree`: Equinox's
(out, in, kh, kw) weights arrive in that layout too).
Arrays only: `jaxviz.plot.arch` draws them, the report's stages save the figures.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxviz import arch
from jaxviz.core import adapters
from jaxviz.core.checks import as_images, positive_int
from jaxviz.core.probe import layer_params

MODES = ("channel", "mean", "mosaic")


def conv_layers(probe, params, x_shape: tuple[int, ...] | None = None) -> list[str]:
    """Layers holding a 4-D `kernel`, in call order when `x_shape` is given."""
    tree = adapters.param_tree(probe, params)
    found = []

    def walk(node, path):
        if isinstance(node, Mapping):
            k = node.get("kernel")
            if getattr(k, "ndim", 0) == 4:
                found.append(".".join(map(str, path)))
            for key, v in node.items():
                walk(v, path + (key,))
    walk(tree, ())
    if x_shape is not None:
        order = {name: i for i, name in enumerate(probe.layer_shapes(tuple(x_shape)))}
        found.sort(key=lambda n: order.get(n, len(order)))
    return found


def conv_kernel(probe, params, layer: str, *, sample_input=None) -> jax.Array:
    """The (kh, kw, in, out) kernel of a 2-D conv layer, or a ValueError saying why not.

    sample_input: optional (N, H, W, C) array; with it, errors check the name against every
    layer of the model and name the layer's type.
    """
    try:
        p = layer_params(probe, params, layer)
    except ValueError:
        p = None
    kernel = p.get("kernel") if isinstance(p, Mapping) else None
    if getattr(kernel, "ndim", 0) == 4:
        return jnp.asarray(kernel)
    why = ("has no parameters" if p is None else "has no 'kernel' parameter" if kernel is None
           else f"has a kernel of shape {tuple(kernel.shape)}, not a 2-D convolution kernel "
                f"(kh, kw, in, out)")
    convs = conv_layers(probe, params)
    if sample_input is None:
        raise ValueError(f"layer {layer!r} {why}; layers with a 2-D convolution kernel: {convs}")
    types = {r.name: r.type for r in arch.summary(probe, sample_input, params).rows}
    if layer not in types:
        raise ValueError(f"unknown layer {layer!r}; known layers: {list(types)}")
    raise ValueError(f"layer {layer!r} ({types[layer]}) {why}, so it has no filters to show; "
                     f"layers with a 2-D convolution kernel: {convs}")


def filter_grid(probe, params, layer: str, mode: str = "channel", in_channel: int = 0, *,
                max_out: int = 16, max_in: int = 16, sample_input=None) -> jax.Array:
    """A conv layer's kernels as image tiles.

    mode "channel": (out, kh, kw), the kernels seen by input channel `in_channel`;
    "mean": (out, kh, kw), averaged over input channels;
    "mosaic": (min(out, max_out), min(in, max_in), kh, kw), every out x in pair.
    """
    probe, params = arch.as_probe(probe, params, "probe")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    max_out, max_in = positive_int(max_out, "max_out"), positive_int(max_in, "max_in")
    k = conv_kernel(probe, params, layer, sample_input=sample_input)
    n_in = k.shape[2]
    if mode == "channel":
        if isinstance(in_channel, bool) or not isinstance(in_channel, int) \
                or not 0 <= in_channel < n_in:
            raise ValueError(f"in_channel must be an int in [0, {n_in}) for layer {layer!r}; "
                             f"got {in_channel!r}")
        return jnp.moveaxis(k[:, :, in_channel, :], -1, 0)
    if mode == "mean":
        return jnp.moveaxis(k.mean(axis=2), -1, 0)
    return jnp.transpose(k[:, :, :max_in, :max_out], (3, 2, 0, 1))


def _feature_maps_impl(fn, params, x, layers):
    _, acts = fn.run(params, x)
    return {name: acts[name] for name in layers}


_feature_maps_jit = jax.jit(_feature_maps_impl, static_argnames=("fn", "layers"))


def feature_maps(probe, params, images, layers: str | Sequence[str]) -> dict[str, jax.Array]:
    """Activations of the named layers. images: (N, H, W, C) -> {layer: (N, ...)}.

    Pass a few images: all activations of the batch are materialized at once.
    """
    probe, params = arch.as_probe(probe, params, "probe")
    x = as_images(images, "images")
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one layer; got none")
    for name in layers:
        probe.check_layer(name, x.shape)
    return _feature_maps_jit(probe, params, x, layers=layers)
