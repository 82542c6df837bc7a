"""What DeepLIFT's and LRP's rule tables share: the traced program of `fn(params, x)`,
which primitives are structural, linear or elementwise, and which layer an equation is in.

Both methods trace `fn` to a jaxpr and evaluate it on `jaxviz.core.interpret` with values
that know whether they depend on the input ("live") and a `default` that refuses, with the
primitive and the layer named, any live equation it has no rule for. Equations on
constants only (weights, BatchNorm statistics) are evaluated as they are.

A Probe traces each layer's ops under `probe.layer_scope(name)`, so `layer_of(eqn)` reads
the innermost "jaxviz[<layer>]" of the equation's name stack.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jaxviz.core import interpret

# Primitives that only move, copy or select values: their own VJP moves DeepLIFT's
# multipliers and LRP's relevance correctly. Value: the operands that may depend on the
# input (None: any); the others (indices, predicates) must be constants.
STRUCTURAL = {
    "reshape": (0,), "transpose": (0,), "broadcast_in_dim": (0,), "squeeze": (0,),
    "expand_dims": (0,), "slice": (0,), "dynamic_slice": (0,), "gather": (0,), "pad": (0,),
    "rev": (0,), "convert_element_type": (0,), "copy": (0,), "copy_p": (0,),
    "reduce_precision": (0,), "split": (0,), "concatenate": None, "stack": None,
    "select_n": "data",
    "dynamic_update_slice": (0, 1),
}
# Max-like reductions: DeepLIFT's max-pool rule; LRP's winner-takes-all (their gradient).
MAX_LIKE = ("reduce_window_max", "reduce_max", "reduce_window_min", "reduce_min")
# Linear maps without weights (LRP "pool" layers): sums, sum pooling (avg pool before its div).
SUMS = ("reduce_sum", "reduce_window_sum")
LINEAR_KINDS = {"conv_general_dilated": "conv", "dot_general": "dense",
                "reduce_sum": "pool", "reduce_window_sum": "pool"}
ELEMENTWISE = frozenset("""
    neg sign floor ceil round is_finite exp exp2 log log1p expm1 tanh logistic sin cos tan
    asin acos atan sinh cosh asinh acosh atanh sqrt rsqrt cbrt erf erfc erf_inv lgamma
    digamma abs integer_pow square pow add sub mul div rem max min atan2 nextafter eq ne lt
    le gt ge and or not xor select_n convert_element_type copy copy_p clamp
    reduce_precision""".split())
CALL_NAMES = tuple(interpret.CALLS)  # rules see calls first: an activation is claimed whole

_LAYER = re.compile(r"jaxviz\[([^\]]*)\]")


class NoRuleError(ValueError):
    """An input-dependent equation that the method has no rule for."""


def layer_of(eqn) -> str | None:
    """The innermost Probe layer the equation was traced in, or None."""
    found = _LAYER.findall(str(eqn.source_info.name_stack))
    return found[-1] if found else None


def describe(eqn) -> str:
    """'primitive 'cumsum' in layer 'conv1'' (or 'outside any layer (name stack ...)')."""
    layer = layer_of(eqn)
    where = (f"in layer {layer!r}" if layer is not None else
             f"outside any layer (name stack {str(eqn.source_info.name_stack)!r})")
    return f"primitive {eqn.primitive.name!r} {where}"


def no_rule(method: str, eqn, why: str = "") -> NoRuleError:
    return NoRuleError(f"{method} has no rule for {describe(eqn)}{': ' + why if why else ''}. "
                       f"Its input-dependent operands would otherwise get a plain gradient, "
                       f"which is not {method}.")


def structural_ok(eqn, live: list[bool]) -> bool:
    """A structural primitive whose live operands are all data operands."""
    allowed = STRUCTURAL.get(eqn.primitive.name, ())
    if allowed is None:
        return True
    if allowed == "data":  # select_n: the predicate (operand 0) must be constant
        return not live[0]
    return all(i in allowed for i, v in enumerate(live) if v)


def is_literal(atom, *, nonneg: bool = False) -> bool:
    """A scalar literal (>= 0 when nonneg)."""
    if not isinstance(atom, jcore.Literal) or jnp.ndim(atom.val) != 0:
        return False
    return not nonneg or float(atom.val) >= 0


def elementwise_call(eqn, live: list[bool]) -> bool:
    """A call (jit, custom_jvp, ...) of one live array that computes, elementwise, one
    output of that array's shape: an activation function (jax.nn.relu, leaky_relu, silu)."""
    sub = interpret.body(eqn)
    if (sub is None or sum(live) != 1 or len(eqn.outvars) != 1
            or eqn.outvars[0].aval.shape != eqn.invars[live.index(True)].aval.shape):
        return False
    shape = eqn.outvars[0].aval.shape
    ok = [True]

    def visit(e, invals):
        if any(invals) and (e.primitive.name not in ELEMENTWISE
                            or any(v.aval.shape != shape for v in e.outvars)):
            ok[0] = False
        return [any(invals)] * len(e.outvars)
    outs = interpret.evaluate(sub, live, default=visit, lift=lambda _: False,
                              custom="inline", remat="inline")
    return ok[0] and bool(outs[0])


def nonneg_output(eqn) -> bool:
    """The (elementwise) equation's output is >= 0 whatever its input: max(x, c >= 0)
    (a ReLU), abs, exp, logistic, square, sqrt, also as the last op of a call's body."""
    sub = interpret.body(eqn)
    if sub is not None:
        out = sub.jaxpr.outvars[0]
        last = [e for e in sub.jaxpr.eqns if out in e.outvars]
        return bool(last) and nonneg_output(last[-1])
    name = eqn.primitive.name
    if name == "max":
        return any(is_literal(a, nonneg=True) for a in eqn.invars)
    if name == "integer_pow":
        return eqn.params["y"] % 2 == 0
    return name in ("abs", "exp", "exp2", "logistic", "square", "sqrt", "rsqrt")


def trace(fn, params, x):
    """fn(params, x)'s jaxpr with params' leaves then x as inputs -> (closed, leaves).

    The output must be one array (a Probe selects the logits)."""
    leaves, tree = jax.tree.flatten(params)
    closed, out = jax.make_jaxpr(
        lambda ps, x: fn(jax.tree.unflatten(tree, ps), x), return_shape=True)(leaves, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"fn must return one (N, K) array of logits; got "
                         f"{jax.tree.structure(out)}")
    return closed, leaves


def bind(eqn, invals) -> list:
    return interpret.bind(eqn, invals)
