"""Where LRP and DeepLIFT start: class indices, or an objective's unit.

Both methods carry something backward from one score. A class index starts at the logit,
as before. An objective (`jaxviz.core.objectives`) starts at the unit it reads when it is
a linear read-out of the logits or of one layer's activation: `class_logit(k)`,
`neuron(layer, c, y, x)`, `channel(layer, c)` (the channel's mean), `direction(layer, v)`
and sums and scales of these. Its score is then s = <c, a> summed over the values it
reads (a: the logits or a layer's activation, c: the objective's constant weights), and

    LRP       the relevance at each value a is c * a (each unit's share of s), carried
              down to the input by the rules: sum(R) = s on a conservative net
    DeepLIFT  the multipliers of s are c carried down: sum(map) = s(x) - s(baseline)

A probability, a margin, a region of a dense output or a custom function is not such a
read-out (no unit's share of it is defined), so it is refused, naming method and target.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxviz.core import objectives as obj
from jaxviz.core import probe as probe_lib

_READOUTS = {obj._Channel: "channel", obj._Neuron: "neuron", obj._Direction: "direction"}
ACCEPTED = "class indices, class_logit, neuron, channel, direction, or sums and scales of these"


@dataclasses.dataclass(frozen=True)
class Start:
    """A resolved objective start: node (static) and args (arrays); layers it reads."""
    node: Any
    args: Any
    layers: tuple
    name: str


def is_objective(target) -> bool:
    """An Objective, or an already resolved target that carries one (`node` and `args`)."""
    return isinstance(target, obj.Objective) or (
        hasattr(target, "node") and hasattr(target, "args") and not isinstance(target, type))


def kinds(node) -> list[str]:
    """The kinds a node is made of, 'unsupported:<kind>' for those no rule starts from."""
    inner = getattr(node, "inner", None)
    if type(node).__name__ in ("_Many", "_Unit") and inner is not None:
        return ["unsupported:several targets at once"]
    if isinstance(node, obj._Logit):
        return ["class_logit"] if not node.prob else ["unsupported:class_prob"]
    if type(node) in _READOUTS:
        return [_READOUTS[type(node)]]
    if isinstance(node, obj._Sum):
        return kinds(node.a) + kinds(node.b)
    if isinstance(node, obj._Scale):
        return kinds(node.inner)
    simple = {obj._Margin: "margin", obj._Region: "region", obj._Custom: "custom"}
    return [f"unsupported:{simple.get(type(node), type(node).__name__)}"]


def layers_of(node) -> tuple:
    if type(node) in _READOUTS:
        return (node.layer,)
    if isinstance(node, obj._Sum):
        return tuple(dict.fromkeys(layers_of(node.a) + layers_of(node.b)))
    if isinstance(node, obj._Scale):
        return layers_of(node.inner)
    return ()


def resolve(method: str, fn, params, x_shape, target) -> Start:
    """The checked start of `target` (an Objective) for images of x_shape, or a ValueError
    naming method and objective when no rule can start from it (module docstring)."""
    name = getattr(target, "name", None) or repr(target)
    bad = [k.split(":", 1)[1] for k in kinds(target.node) if k.startswith("unsupported:")]
    if bad:
        raise ValueError(
            f"{method} cannot start from target {name!r} ({', '.join(bad)}): its rules carry "
            f"a unit's share of a linear read-out, and {bad[0]} is not one (no unit's share "
            f"of it is defined). Pass {ACCEPTED}; for a probability or a margin use a "
            f"gradient or perturbation method")
    layers = layers_of(target.node)
    shapes = {}
    if layers:
        if not isinstance(fn, probe_lib.Probe):
            raise ValueError(f"{method}: target {name!r} reads layer(s) {list(layers)}; pass a "
                             f"jaxviz.core.probe.Probe (probe.from_model(model)) so layers "
                             f"have names")
        shapes = dict(fn.layer_shapes(tuple(x_shape)))
    out_shape = (tuple(fn.output_shape(tuple(x_shape))) if isinstance(fn, probe_lib.Probe)
                 else tuple(jax.eval_shape(
                     fn, params, jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)).shape))
    check = getattr(target.node, "check", None)
    if check is not None:
        check(target.args, out_shape, shapes)
    return Start(target.node, target.args, layers, name)


@dataclasses.dataclass(frozen=True)
class Readout:
    """probe's (logits, {layer: activation}) for the layers an objective reads: the
    program the rules rewrite. Hash-equal for equal probe structure and layers."""
    probe: Any
    layers: tuple

    def __call__(self, params, x):
        if not self.layers:
            return self.probe(params, x), {}
        logits, acts = self.probe.run(params, x)
        return logits, {k: acts[k] for k in self.layers}

    @property
    def __name__(self):
        return f"readout({', '.join(self.layers) or 'logits'})"


def score(node, args, values) -> jax.Array:
    """The objective (N,) on values = (logits, {layer: activation})."""
    logits, acts = values
    return node(args, logits, acts)


def weights(node, args, values):
    """c: the objective's weights on each value (its gradient; constant, it is linear)."""
    fixed = jax.tree.map(lax.stop_gradient, values)
    return jax.grad(lambda v: score(node, args, v).sum())(fixed)


def seeded_total(node, args, values):
    """(sum_values <a, stop_gradient(c * a)>, score): its gradient w.r.t. the values is the
    LRP seed c * a, and its value is sum(score) (LRP's relevance of the score)."""
    c = weights(node, args, values)
    seed = jax.tree.map(lambda ci, a: lax.stop_gradient(ci * a), c, values)
    total = sum(jnp.sum(a * s) for a, s in zip(jax.tree.leaves(values), jax.tree.leaves(seed)))
    return total, score(node, args, values)
