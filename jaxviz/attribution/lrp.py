"""Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019) for any model.

    res = lrp(probe, probe.params, x, target, composite="epsilon_plus")
    res.map              # (N, H, W, C) relevance R
    res.extras["delta"]  # (N,) sum(R) - logit

The relevance of the output is the target logit itself (as Captum's LRP), so for
conservative rules on a bias-free net sum(R) equals the logit; delta = sum(R) - logit
measures what biases, stabilizers and non-conservative rules absorbed. An objective
target (`neuron("conv2", 3)`, `channel`, `direction`, `class_logit`, sums and scales)
starts the relevance at its unit instead (`jaxviz.propagation.start`): R there is each
unit's share c * a of the objective's score, and delta = sum(R) - score. Rules attach to
the primitives of the traced program and are chosen per layer by a composite
(`jaxviz.propagation.lrp_composites`: by layer kind, position and the Probe's layer
names); BatchNorm and other affine ops by constants after a conv/dense are folded into it
(`lrp_trace`); an input-dependent op without a rule is an error naming the op and the
layer (the supported ones: docs/propagation_primitives.md). The map is
one backward pass.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
from jax import lax

from jaxviz.core import analysis
from jaxviz.core import probe as probe_lib
from jaxviz.core import compile as compile_lib
from jaxviz.core.result import Attribution, attribution_method
from jaxviz.propagation import lrp_composites, start
from jaxviz.propagation.lrp_trace import LrpFn


def _input_range(fn):
    return tuple(getattr(fn, "input_range", None) or (0.0, 1.0))


@functools.partial(compile_lib.jit, static_argnames=("model",))
def _lrp(model, params, x, t):
    fast = compile_lib.fast_model(model)

    def total(x):
        score = analysis.target_score(fast(params, x), t)
        return (score * lax.stop_gradient(score)).sum(), score  # seed: R = the logit

    R, score = jax.grad(total, has_aux=True)(x)
    return R, R.sum(axis=(1, 2, 3)) - score


@functools.partial(compile_lib.jit, static_argnames=("model", "node"))
def _lrp_objective(model, node, params, x, args):
    """model(params, x) -> (logits, {layer: activation}): relevance seeded at the
    objective's unit (module docstring)."""
    fast = compile_lib.fast_model(model)
    R, score = jax.grad(lambda x: start.seeded_total(node, args, fast(params, x)),
                        has_aux=True)(x)
    return R, R.sum(axis=(1, 2, 3)) - score


@attribution_method("lrp")
def lrp(fn, params, images, target, *, composite="epsilon_plus",
        layer_rules: Mapping | None = None, canonize: bool = True) -> Attribution:
    """LRP relevance of each input pixel. images: (N, H, W, C) -> Attribution: map
    (N, H, W, C), extras["delta"] (N,) = sum(R) - target logit (or objective score).

    target: class indices (int or one per image), or an objective whose unit the
      relevance starts at: class_logit, neuron, channel, direction, sums and scales of
      these (others are refused, naming the objective).

    composite: a name in `lrp_composites.COMPOSITES` (default "epsilon_plus": conv
      layers z+, dense layers epsilon) or an `lrp_composites.Composite`.
    layer_rules: {layer name: rule} overriding the composite for named layers of a Probe
      (a `lrp_rules.Rule` such as `Gamma(0.5)`, or a rule name such as "epsilon").
    canonize: fold affine ops by constants after a conv/dense (BatchNorm) into it.
    """
    comp = lrp_composites.resolve(composite, layer_rules)
    if start.is_objective(target):
        x = analysis.check_images(fn, params, images)
        s = start.resolve("lrp", fn, params, x.shape, target)
        _check_layer_rules(fn, x, layer_rules)
        model = LrpFn(start.Readout(analysis.static_fn(fn), s.layers), comp,
                      canonize=canonize, input_range=_input_range(fn))
        R, delta = _lrp_objective(model, s.node, params, x, s.args)
        return Attribution(R, {"delta": delta})
    x, t = analysis.check_inputs(fn, params, images, target)
    _check_layer_rules(fn, x, layer_rules)
    model = LrpFn(analysis.static_fn(fn), comp, canonize=canonize,
                  input_range=_input_range(fn))
    R, delta = _lrp(model, params, x, t)
    return Attribution(R, {"delta": delta})


def _check_layer_rules(fn, x, layer_rules):
    if layer_rules and isinstance(fn, probe_lib.Probe):
        known = list(fn.layer_shapes(tuple(x.shape)))
        unknown = sorted(set(layer_rules) - set(known))
        if unknown:
            raise ValueError(f"layer_rules names unknown layer(s) {unknown}; known layers: "
                             f"{known}")


def canonized(fn, *, composite="epsilon", input_range=(0.0, 1.0)):
    """fn(params, x) computed as LRP's rules see it: every conv/dense with the affine ops
    after it (bias, BatchNorm) as one layer s * op(x, w) + t. Its logits equal fn's up to
    float rounding (a check of the canonizer)."""
    return LrpFn(fn, lrp_composites.resolve(composite), input_range=input_range,
                 canonical_forward=True)
