"""DeepLIFT and LRP at a layer (Captum's LayerDeepLift and LayerLRP), with jaxviz's own
propagation rules unchanged.

The model after the layer is a function of the layer's activation a: `Tail(probe,
layer, node)((params, x, args), a)` runs the Probe with `layer`'s output replaced by a
and returns the target's score (N, 1). jaxviz's DeepLIFT and LRP rewrite any traced
program, so they run on the tail as they run on a whole model, with a as the input:

    layer DeepLIFT  (A(x) - A(b)) * m, m = DeepLIFT's multipliers at the layer
                    delta = sum(map) - (S(x) - S(b))
    layer LRP       R at the layer: the relevance that the rules carry down from the
                    target's score (seeded with its value) to the layer's output
                    delta = sum(R) - S(x)     (Captum's LayerLRP delta is S(x) - sum(R))

What comes before the layer is traced only for x (it does not depend on a) and dropped
by the compiler. A composite's special first-layer rule (Flat, ZBox) belongs to the
model's first layer, which is never after the layer: layer LRP drops it.
Only scores these rules can start from are taken: class indices, class logits, neurons,
channels and directions, and sums and scales of these; a probability, a margin, a region
or a custom objective is refused, naming method and objective.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxviz.attribution import integrated
from jaxviz.attribution import layer_core as core
from jaxviz.propagation import deeplift_reveal, lrp_composites
from jaxviz.propagation.deeplift_rules import DeepLiftFn
from jaxviz.propagation.lrp_trace import LrpFn
from jaxviz.core import analysis, checks, targets
from jaxviz.core import compile as compile_lib
from jaxviz.core.result import Attribution, attribution_method


@dataclasses.dataclass(frozen=True)
class Tail:
    """The model after `layer`: ((params, x, args), a (N, ...)) -> the score (N, 1).
    unit_shape: the activation's shape without the batch axis, when a comes in flattened
    to (N, units, 1, 1) (DeepLIFT's image-shaped input); None: a as it is."""
    probe: Any
    layer: str
    node: Any
    unit_shape: tuple | None = None

    def __call__(self, p, a):
        params, x, args = p
        if self.unit_shape is not None:
            a = a.reshape((a.shape[0],) + self.unit_shape)
        logits, acts = self.probe.run(params, x, edits={self.layer: lambda _: a})
        return core.score(self.node, args, logits, acts)[:, None]


PROPAGATED = ("class_logit", "channel", "neuron", "direction")
WHY_NOT = {"class_prob": "a softmax mixes every logit; its rules start at one value",
           "margin": "a max over the other logits has no propagation rule",
           "region": "a dense output's region is not one unit",
           "custom": "an arbitrary function has no defined relevance"}


def _prepare(fn, params, images, target, layer, method):
    c = core.prepare(fn, params, images, target, layer, method)
    targets.check_kinds(c.target, PROPAGATED, method, WHY_NOT)
    return c


@functools.partial(compile_lib.jit, static_argnames=("probe", "layer", "node", "rule"))
def _layer_deeplift(probe, params, x, b, args, layer, node, rule):
    a1 = core.activation(probe, params, x, layer)
    a0 = jnp.broadcast_to(core.activation(probe, params, b, layer), a1.shape)
    flat = (a1.shape[0], -1, 1, 1)  # DeepLIFT's rewrite takes an image-shaped input
    model = compile_lib.fast_model(DeepLiftFn(Tail(probe, layer, node, a1.shape[1:]), rule))

    def total(a):
        out, out0 = model((params, x, args), a, a0.reshape(flat))
        return out[:, 0].sum(), (out[:, 0], out0[:, 0])
    m, (fx, fb) = jax.grad(total, has_aux=True)(a1.reshape(flat))
    attr = (a1 - a0) * m.reshape(a1.shape)  # the multipliers at the layer
    return attr, core.flat_sum(attr) - (fx - fb)


@attribution_method("layer_deeplift")
def layer_deeplift(fn, params, images, target, *, layer: str, baselines=None,
                   blur_sigma: float = 5.0, rule: str = "rescale") -> Attribution:
    """Layer DeepLIFT (Captum's LayerDeepLift). images (N, H, W, C) -> Attribution: map
    shaped like `layer`'s activation, extras["delta"] (N,) = sum(map) - (S(x) - S(b)).

    baselines, blur_sigma, rule: as deeplift's (the baseline is an image; its activation
    at the layer is the reference there)."""
    if not isinstance(rule, str) or rule not in deeplift_reveal.RULES:
        raise ValueError(f"rule must be one of {deeplift_reveal.RULES}; got {rule!r}")
    c = _prepare(fn, params, images, target, layer, "layer_deeplift")
    b = integrated._baselines(baselines, c.x, blur_sigma)
    checks.warn_outside_range(b, c.x, "baselines")
    attr, delta = _layer_deeplift(analysis.static_fn(fn), params, c.x, b, c.args, layer,
                                  c.node, rule)
    return core.finish(Attribution(attr, {"delta": delta}), c)


@functools.partial(compile_lib.jit, static_argnames=("model",))
def _layer_lrp(model, params, x, args, a):
    fast = compile_lib.fast_model(model)

    def total(a):
        s = fast((params, x, args), a)[:, 0]
        return (s * lax.stop_gradient(s)).sum(), s  # seed: R = the score

    R, s = jax.grad(total, has_aux=True)(a)
    return R, core.flat_sum(R) - s


@functools.partial(jax.jit, static_argnames=("probe", "layer"))
def _activation(probe, params, x, layer):
    return core.activation(probe, params, x, layer)


@attribution_method("layer_lrp")
def layer_lrp(fn, params, images, target, *, layer: str, composite="epsilon_plus",
              layer_rules=None, canonize: bool = True) -> Attribution:
    """Layer LRP (Captum's LayerLRP): the relevance at `layer`'s output. images
    (N, H, W, C) -> Attribution: map shaped like `layer`'s activation, extras["delta"] (N,)
    = sum(map) - S(x). composite, layer_rules, canonize: as lrp's (the layers after
    `layer` get their rules; a special first-layer rule is dropped)."""
    comp = dataclasses.replace(lrp_composites.resolve(composite, layer_rules), first=None)
    c = _prepare(fn, params, images, target, layer, "layer_lrp")
    view = analysis.static_fn(fn)
    model = LrpFn(Tail(view, layer, c.node), comp, canonize=canonize,
                  input_range=tuple(fn.input_range))
    R, delta = _layer_lrp(model, params, c.x, c.args, _activation(view, params, c.x, layer))
    return core.finish(Attribution(R, {"delta": delta}), c)
