"""Guided backprop and deconvnet: swap every ReLU's backward rule without editing the model.

`fn` is traced to a jaxpr and re-evaluated with each ReLU replaced by a `jax.custom_vjp`
version whose forward is unchanged. A ReLU is recognised as
- `custom_jvp_call` whose body computes `max(x, 0)` (how `jax.nn.relu`, `nnx.relu` and
  `linen.relu` appear), and
- a bare `max(x, 0)` (e.g. `jnp.maximum(x, 0.0)`),
also inside `jit`, `closed_call` and `jax.checkpoint` bodies: the rules are a table on
`jaxviz.core.interpret`, which inlines those. ReLUs inside other custom-derivative
functions (`jax.custom_vjp`/`custom_jvp`, whose derivative the user chose) and inside
control flow (`scan`, `while`, `cond`) keep their ordinary rule.

Backward rules (cotangent g at the ReLU's output, x its input):
    plain:    g * (x > 0)
    guided:   g * (x > 0) * (g > 0)   (Springenberg et al. 2015)
    deconv:   g * (g > 0)             (Zeiler & Fergus 2014)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jaxviz.core import interpret

RULES = ("guided", "deconvnet")


@jax.custom_vjp
def guided_relu(x):
    return jnp.maximum(x, 0)


guided_relu.defvjp(lambda x: (jnp.maximum(x, 0), x),
                   lambda x, g: (jnp.where((x > 0) & (g > 0), g, 0),))


@jax.custom_vjp
def deconv_relu(x):
    return jnp.maximum(x, 0)


deconv_relu.defvjp(lambda x: (jnp.maximum(x, 0), None),
                   lambda _, g: (jnp.maximum(g, 0),))

_RELUS = {"guided": guided_relu, "deconvnet": deconv_relu}


def _is_zero(atom) -> bool:
    return isinstance(atom, jcore.Literal) and jnp.ndim(atom.val) == 0 and atom.val == 0


def _is_bare_relu(eqn) -> bool:
    return eqn.primitive.name == "max" and len(eqn.invars) == 2 and (
        _is_zero(eqn.invars[0]) or _is_zero(eqn.invars[1]))


def _operand(eqn, invals):
    """The value max(., 0) is taken of."""
    return invals[1] if _is_zero(eqn.invars[0]) else invals[0]


_INPUT, _RELU = object(), object()  # markers: the body's input, max(input, 0)


def _body_is_relu(closed) -> bool:
    """True when a one-input jaxpr computes max(input, 0), possibly through nested calls."""
    leaves = []

    def leaf(eqn, invals):
        leaves.append(eqn)
        relu = _is_bare_relu(eqn) and _operand(eqn, invals) is _INPUT
        return [_RELU if relu else None] * len(eqn.outvars)
    if len(closed.jaxpr.invars) != 1 or len(closed.jaxpr.outvars) != 1:
        return False
    outs = interpret.evaluate(closed, [_INPUT], default=leaf, lift=lambda _: None,
                              remat="inline")
    return len(leaves) == 1 and outs[0] is _RELU


def _custom_relu(relu, eqn, invals):
    sub = interpret.body(eqn)
    if sub is None or len(invals) != 1 or not _body_is_relu(sub):
        return None  # not a ReLU: the interpreter keeps its custom derivative
    return [relu(invals[0])]


def _bare_relu(relu, eqn, invals):
    return [relu(_operand(eqn, invals))] if _is_bare_relu(eqn) else None


def rules(rule: str) -> dict:
    """The interpreter rule table that gives every ReLU the backward rule `rule`."""
    if rule not in _RELUS:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    return _TABLES[rule]


_TABLES = {name: {"custom_jvp_call": functools.partial(_custom_relu, relu),
                  "max": functools.partial(_bare_relu, relu)} for name, relu in _RELUS.items()}


def with_relu_rule(fn, rule: str):
    """fn(*args) -> the same values, with every ReLU's backward rule replaced by `rule`.

    rule: "guided" or "deconvnet". Works on any function of arrays/pytrees (a Probe, an
    apply_fn); it is traced to a jaxpr at each call, so wrap the caller in `jax.jit`.
    Returns an `interpret.Rewritten`: `fastgrad.fast` of it runs both rule tables in one pass.
    """
    return interpret.rewrite(fn, rules(rule))


# Primitives through which other activations appear in a traced model: the sigmoid of
# SiLU/swish ("logistic"), tanh, and the exact GELU's erf.
OTHER_ACTIVATIONS = ("logistic", "tanh", "erf", "erfc")


def census(fn, *args) -> dict:
    """What `with_relu_rule` would rewrite in fn(*args), by tracing (no compute):
    {"relu": number of ReLUs found, "other": sorted names of other activation primitives}."""
    closed = jax.make_jaxpr(fn)(*args)
    relus, other = 0, set()
    for eqn in interpret.leaf_eqns(closed, custom="keep", remat="inline"):
        name = eqn.primitive.name
        sub = interpret.body(eqn) if name == "custom_jvp_call" else None
        if _is_bare_relu(eqn) or (sub is not None and _body_is_relu(sub)):
            relus += 1
        elif sub is not None:
            other.update(e.primitive.name for e in interpret.leaf_eqns(sub)
                         if e.primitive.name in OTHER_ACTIVATIONS)
        elif name in OTHER_ACTIVATIONS:
            other.add(name)
    return {"relu": relus, "other": sorted(other)}
