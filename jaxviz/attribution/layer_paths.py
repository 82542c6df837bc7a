"""Path methods at a layer, as Captum defines them: layer Integrated Gradients, layer
conductance, internal influence and neuron conductance.

With A the layer's activation, S the target's score, x_a = b + a (x - b) the straight
input path and (a_k, w_k) the quadrature's points and weights (`integrated.path_weights`):

    layer IG            (A(x) - A(b)) * sum_k w_k dS/dA at A(b) + a_k (A(x) - A(b))
                        (the straight path between the activations, run from the layer on)
    internal influence  sum_k w_k dS/dA at x_{a_k}                    (no delta)
    layer conductance   sum_{k<n} dS/dA at x_{a_k} * (A(x_{a_k+1}) - A(x_{a_k})), over
                        n + 1 points of the method (Captum's n_steps + 1)
    neuron conductance  (x - b) * sum_k w_k dS/dA_u at x_{a_k} * dA_u/dx at x_{a_k}, for
                        one unit u of the layer: a map over the input pixels
    delta = sum(map) - (S(x) - S(b))   (layer IG, conductance): completeness at the layer

Conductance is a left Riemann sum along the curve A(x_a): its delta shrinks as 1/n for
every method. Its differences telescope to A(x) - A(b) when the points include 0 and 1
("riemann_trapezoid"); Gauss-Legendre points (Captum's default) leave out the two end
pieces [0, a_0] and [a_n, 1], which shrink as n grows. Points run `chunk_size` at a time
(None: all that fit, core.analysis.default_chunk).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.attribution import integrated
from jaxviz.attribution import layer_core as core
from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core.result import Attribution, attribution_method

_STATIC = ("probe", "layer", "node", "method", "n_steps", "chunk")


def _path_options(fn, params, x, n_steps, method, chunk_size, passes):
    n_steps = checks.positive_int(n_steps, "n_steps")
    if method not in integrated.METHODS:
        raise ValueError(f"method must be one of {integrated.METHODS}; got {method!r}")
    if method == "riemann_trapezoid" and n_steps < 2:
        raise ValueError(f"n_steps must be >= 2 for riemann_trapezoid; got {n_steps}")
    chunk = analysis.default_chunk(analysis.check_chunk_size(chunk_size), fn, params,
                                   x.shape, passes(n_steps))
    return n_steps, chunk


def _baselines(baselines, x, blur_sigma):
    b = integrated._baselines(baselines, x, blur_sigma)
    checks.warn_outside_range(b, x, "baselines")
    return b


@functools.partial(compile_lib.jit, static_argnames=_STATIC)
def _layer_ig(probe, params, x, b, args, layer, node, method, n_steps, chunk):
    fx, a1 = core.run_scored(probe, params, x, layer, node, args)
    fb, a0 = core.run_scored(probe, params, b, layer, node, args)
    alphas, w = integrated.path_weights(method, n_steps)

    def grads(s):  # (c,) points -> (c, N, ...)
        c = s.shape[0]
        return core.per_point(core.grad_at(probe, params, core.rows(x, c), layer, node, args,
                                           core.along(s, a0, a1), c), c)
    attr = core.path_sum(grads, alphas, w, chunk) * (a1 - a0)
    return attr, core.flat_sum(attr) - (fx - fb)


@attribution_method("layer_integrated_gradients")
def layer_integrated_gradients(fn, params, images, target, *, layer: str, baselines=None,
                               n_steps: int = 50, method: str = "gausslegendre",
                               chunk_size: int | None = None,
                               blur_sigma: float = 5.0) -> Attribution:
    """Layer Integrated Gradients (Captum's LayerIntegratedGradients). images (N, H, W, C)
    -> Attribution: map (N, ...) shaped like `layer`'s activation, extras["delta"] (N,) =
    sum(map) - (S(x) - S(b)).

    layer: a layer name of the Probe fn. baselines: as integrated_gradients' (None or
      "zeros", "blur", a number, an array shaped like images). method, n_steps: the
      quadrature (integrated.METHODS). target: class indices or an Objective.
    """
    c = core.prepare(fn, params, images, target, layer, "layer_integrated_gradients")
    n_steps, chunk = _path_options(fn, params, c.x, n_steps, method, chunk_size, lambda n: n)
    b = _baselines(baselines, c.x, blur_sigma)
    attr, delta = _layer_ig(analysis.static_fn(fn), params, c.x, b, c.args, layer, c.node,
                            method, n_steps, chunk)
    return core.finish(Attribution(attr, {"delta": delta}), c)


def _input_path(probe, params, x, b, args, layer, node, shape, s):
    """(A, dS/dA) at the input path points b + s_k (x - b), s (c,): each (c * N, ...)."""
    c = s.shape[0]
    return core.grad_and_act(probe, params, core.along(s, b, x), layer, node, args,
                             (c * shape[0],) + shape[1:], c)


@functools.partial(compile_lib.jit, static_argnames=_STATIC + ("shape",))
def _conductance(probe, params, x, b, args, layer, node, method, n_steps, chunk, shape):
    alphas, _ = integrated.path_weights(method, n_steps + 1)

    def step(pair):  # (c,) points and the next ones -> (c, N, ...)
        a, g = _input_path(probe, params, x, b, args, layer, node, shape, pair[0])
        a_next = core.activation(probe, params, core.along(pair[1], b, x), layer)
        return core.per_point(g * (a_next - a), pair[0].shape[0])
    attr = core.path_sum(step, (alphas[:-1], alphas[1:]), np.ones(n_steps), chunk)
    fx = core.run_scored(probe, params, x, layer, node, args)[0]
    fb = core.run_scored(probe, params, b, layer, node, args)[0]
    return attr, core.flat_sum(attr) - (fx - fb)


@attribution_method("layer_conductance")
def layer_conductance(fn, params, images, target, *, layer: str, baselines=None,
                      n_steps: int = 50, method: str = "gausslegendre",
                      chunk_size: int | None = None, blur_sigma: float = 5.0) -> Attribution:
    """Layer conductance (Dhamdhere et al. 2018; Captum's LayerConductance). images
    (N, H, W, C) -> Attribution: map shaped like `layer`'s activation, extras["delta"] (N,)
    = sum(map) - (S(x) - S(b)). Evaluates n_steps + 1 input path points (each a forward
    pass to the layer more than IG's). Options as layer_integrated_gradients; delta -> 0 as
    1/n_steps (module docstring)."""
    c = core.prepare(fn, params, images, target, layer, "layer_conductance")
    n_steps, chunk = _path_options(fn, params, c.x, n_steps, method, chunk_size, lambda n: n)
    b = _baselines(baselines, c.x, blur_sigma)
    attr, delta = _conductance(analysis.static_fn(fn), params, c.x, b, c.args, layer, c.node,
                               method, n_steps, chunk, c.shape)
    return core.finish(Attribution(attr, {"delta": delta}), c)


@functools.partial(compile_lib.jit, static_argnames=_STATIC + ("shape",))
def _influence(probe, params, x, b, args, layer, node, method, n_steps, chunk, shape):
    alphas, w = integrated.path_weights(method, n_steps)
    return core.path_sum(lambda s: core.per_point(_input_path(
        probe, params, x, b, args, layer, node, shape, s)[1], s.shape[0]), alphas, w, chunk)


@attribution_method("internal_influence")
def internal_influence(fn, params, images, target, *, layer: str, baselines=None,
                       n_steps: int = 50, method: str = "gausslegendre",
                       chunk_size: int | None = None, blur_sigma: float = 5.0) -> Attribution:
    """Internal influence (Leino et al. 2018; Captum's InternalInfluence): the layer
    gradient integrated along the input path, not multiplied by anything. images
    (N, H, W, C) -> map shaped like `layer`'s activation. Options as
    layer_integrated_gradients."""
    c = core.prepare(fn, params, images, target, layer, "internal_influence")
    n_steps, chunk = _path_options(fn, params, c.x, n_steps, method, chunk_size, lambda n: n)
    b = _baselines(baselines, c.x, blur_sigma)
    return core.finish(Attribution(_influence(analysis.static_fn(fn), params, c.x, b, c.args,
                                              layer, c.node, method, n_steps, chunk,
                                              c.shape)), c)


def unit_mask(neuron, shape, layer: str) -> np.ndarray:
    """One-hot (1, ...) float32 of one unit of a layer shaped (N, ...): neuron = (c, y, x)
    for an (N, h, w, c) layer (jaxviz's neuron(layer, c, y, x) order), c for (N, c)."""
    idx = (neuron,) if isinstance(neuron, (int, np.integer)) else tuple(neuron)
    rest = shape[1:]
    if (len(idx) != len(rest) or any(isinstance(i, bool) or not isinstance(i, (int, np.integer))
                                     for i in idx)):
        want = "(c, y, x)" if len(rest) == 3 else "c" if len(rest) == 1 else f"{len(rest)} ints"
        raise ValueError(f"neuron must be {want} for layer {layer!r} of shape {shape}; "
                         f"got {neuron!r}")
    pos = idx[1:] + idx[:1]  # (c, y, x) -> array order (y, x, c); (c,) stays
    names = {3: ("y", "x", "c"), 1: ("c",)}.get(len(rest), tuple(map(str, range(len(rest)))))
    for i, n, what in zip(pos, rest, names):
        if not 0 <= i < n:
            raise ValueError(f"neuron {what} {i} is out of range for layer {layer!r} of shape "
                             f"{shape} (0..{n - 1})")
    mask = np.zeros((1,) + tuple(rest), np.float32)
    mask[(0,) + tuple(pos)] = 1.0
    return mask


@functools.partial(compile_lib.jit, static_argnames=_STATIC)
def _neuron_conductance(probe, params, x, b, args, mask, layer, node, method, n_steps, chunk):
    alphas, w = integrated.path_weights(method, n_steps)

    def step(s):  # one head forward, one tail gradient, one head backward: (c, N, H, W, C)
        c, xs = s.shape[0], core.along(s, b, x)
        a, head_vjp = jax.vjp(lambda xs: core.activation(probe, params, xs, layer), xs)
        g = core.grad_at(probe, params, xs, layer, node, args, a, c)
        return core.per_point(head_vjp(mask * g)[0], c)  # dS/dA_u * dA_u/dx
    return (x - b) * core.path_sum(step, alphas, w, chunk)


@attribution_method("neuron_conductance")
def neuron_conductance(fn, params, images, target, *, layer: str, neuron, baselines=None,
                       n_steps: int = 50, method: str = "gausslegendre",
                       chunk_size: int | None = None, blur_sigma: float = 5.0) -> Attribution:
    """Neuron conductance (Dhamdhere et al. 2018; Captum's NeuronConductance): how each
    input pixel's IG to the target flows through one unit of `layer`. images (N, H, W, C)
    -> map (N, H, W, C); summed over units of the layer it is the pixels' IG.

    neuron: (c, y, x) of an (N, h, w, c) layer, c of an (N, c) one. Captum's default
    method is "riemann_trapezoid" (its trapezoid weights sum to (n-1)/n, jaxviz's to 1);
    jaxviz's is "gausslegendre", as for its IG. Other options as
    layer_integrated_gradients."""
    c = core.prepare(fn, params, images, target, layer, "neuron_conductance")
    mask = jnp.asarray(unit_mask(neuron, c.shape, layer))
    n_steps, chunk = _path_options(fn, params, c.x, n_steps, method, chunk_size, lambda n: n)
    b = _baselines(baselines, c.x, blur_sigma)
    return core.finish(Attribution(_neuron_conductance(
        analysis.static_fn(fn), params, c.x, b, c.args, mask, layer, c.node, method, n_steps,
        chunk)), c)
