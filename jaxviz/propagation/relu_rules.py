"""Guided backprop and deconvnet: swap every ReLU's backward rule without editing the model.

`fn` is traced to a jaxpr and re-evaluated with each ReLU replaced by a `jax.custom_vjp`
version whose forward is unchanged. A ReLU is recognised as
- `custom_jvp_call` whose body computes `max(x, 0)` (how `jax.nn.relu`, `nnx.relu` and
  `linen.relu` appear), and
- a bare `max(x, 0)` (e.g. `jnp.maximum(x, 0.0)`),
also inside `jit`, `closed_call` and `jax.checkpoint` bodies: the rules are a table on
`jaxviz.core.interpret`, which inlines those.

Activations, not clamps: a max(x, 0) whose result reaches a square root (sqrt, rsqrt,
x ** +-0.5) through elementwise arithmetic and reshapes alone (CLAMP_PATH), in the same jaxpr, is
a clamp that keeps a variance non-negative, not an activation, and keeps its ordinary
rule. Flax's LayerNorm, GroupNorm and batch-statistics BatchNorm compute
var = max(0, E[x^2] - E[x]^2) and then rsqrt(var + eps). The rule is structural and
one-sided: an activation's output meets a contraction (conv, dense) or a reduction before
any square root, so no activation ReLU is skipped (a ReLU feeding a LayerNorm reaches its
rsqrt only through the mean's reduce_sum). ReLUs inside other custom-derivative
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


# What a variance clamp's result may pass through on its way to the square root.
CLAMP_PATH = frozenset({"add", "sub", "mul", "div", "neg", "reshape", "broadcast_in_dim",
                        "squeeze", "expand_dims", "convert_element_type", "copy"})
SQUARE_ROOTS = frozenset({"sqrt", "rsqrt"})


def _is_half_power(eqn) -> bool:
    """x ** 0.5 or x ** -0.5 (`pow` with a literal exponent): a square root too."""
    e = eqn.invars[-1] if eqn.primitive.name == "pow" else None
    return isinstance(e, jcore.Literal) and jnp.ndim(e.val) == 0 and abs(float(e.val)) == 0.5


@functools.lru_cache(maxsize=256)  # jaxprs hash by identity; the cache keeps them alive
def _clamp_vars(jaxpr) -> frozenset:
    """The variables of `jaxpr` that reach a square root through CLAMP_PATH equations only."""
    reaching: set = set()
    for eqn in reversed(jaxpr.eqns):  # consumers come after producers: one backward sweep
        name = eqn.primitive.name
        if name in SQUARE_ROOTS or _is_half_power(eqn) or (name in CLAMP_PATH and any(
                v in reaching for v in eqn.outvars)):
            reaching.update(v for v in eqn.invars if isinstance(v, jcore.Var))
    return frozenset(reaching)


def is_clamp(eqn) -> bool:
    """Whether a max(x, 0) equation (or a ReLU call) is a normalisation's variance clamp:
    its result reaches a square root through CLAMP_PATH alone (module docstring). Called
    from interpreter rules: the enclosing jaxpr is `interpret.enclosing_jaxpr()`."""
    jaxpr = interpret.enclosing_jaxpr()
    return jaxpr is not None and eqn.outvars[0] in _clamp_vars(jaxpr)


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
    if sub is None or len(invals) != 1 or not _body_is_relu(sub) or is_clamp(eqn):
        return None  # not a ReLU: the interpreter keeps its custom derivative
    return [relu(invals[0])]


def _bare_relu(relu, eqn, invals):
    return [relu(_operand(eqn, invals))] if _is_bare_relu(eqn) and not is_clamp(eqn) else None


def rules(rule: str) -> dict:
    """The interpreter rule table that gives every ReLU the backward rule `rule`."""
    if rule not in _RELUS:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    return _TABLES[rule]


_TABLES = {name: {"custom_jvp_call": functools.partial(_custom_relu, relu),
                  "max": functools.partial(_bare_relu, relu)} for name, relu in _RELUS.items()}
# What each entry of the tables does, for the generated primitive list (`table`).
SUMMARY = {
    "custom_jvp_call": "a call whose body is max(x, 0) (jax.nn.relu, nnx.relu, linen.relu, "
                       "keras relu): the rule's backward; other calls keep theirs",
    "max": "max(x, 0) written bare (jnp.maximum(x, 0)): the rule's backward, unless it is a "
           "normalisation's variance clamp (it feeds a square root)",
}


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
    {"relu": number of ReLUs found, "clamps": max(x, 0) clamps left alone (module
    docstring), "other": sorted names of other activation primitives}."""
    closed = jax.make_jaxpr(fn)(*args)
    relus, clamps, other = 0, 0, set()
    for eqn, clamp in _leaves_with_clamps(closed):
        name = eqn.primitive.name
        sub = interpret.body(eqn) if name == "custom_jvp_call" else None
        if _is_bare_relu(eqn) or (sub is not None and _body_is_relu(sub)):
            relus, clamps = relus + (not clamp), clamps + clamp
        elif sub is not None:
            other.update(e.primitive.name for e in interpret.leaf_eqns(sub)
                         if e.primitive.name in OTHER_ACTIVATIONS)
        elif name in OTHER_ACTIVATIONS:
            other.add(name)
    return {"relu": relus, "clamps": clamps, "other": sorted(other)}


def _leaves_with_clamps(closed) -> list:
    """(equation, is_clamp) for the equations the rules see, as `with_relu_rule` evaluates
    them (custom-derivative calls kept whole, checkpoints inlined)."""
    seen = []

    def visit(eqn, invals):
        seen.append((eqn, is_clamp(eqn)))
        return [None] * len(eqn.outvars)
    interpret.evaluate(closed, [None] * len(closed.jaxpr.invars), default=visit,
                       lift=lambda _: None, custom="keep", remat="inline")
    return seen
