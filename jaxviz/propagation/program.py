"""What DeepLIFT's and LRP's rule tables share: the traced program of `fn(params, x)`,
which layer an equation is in, and the error for a primitive without a rule (the
primitives themselves are sorted in `shared`).

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
from jaxviz.propagation import shared

_LAYER = re.compile(r"jaxviz\[([^\]]*)\]")


class NoRuleError(ValueError):
    """An input-dependent equation that the method has no rule for."""


def layer_of(eqn) -> str | None:
    """The innermost Probe layer the equation was traced in, or None."""
    found = _LAYER.findall(str(eqn.source_info.name_stack))
    return found[-1] if found else None


def describe(eqn, after: str | None = None, line: str = "") -> str:
    """"primitive 'cumsum' in layer 'conv1'", or for an op of the model's own code between
    layers "... after layer 'conv2' ... at model.py:42:8 (__call__)" (after: the last
    layer seen before it; the source line when JAX knows it)."""
    layer = layer_of(eqn)
    if layer is not None:  # (its source line would be the library's, not the user's)
        return f"primitive {eqn.primitive.name!r} in layer {layer!r}"
    if after is not None:
        where = f"after layer {after!r} (in the model's own code, outside its layers)"
    else:
        where = "before any named layer (in the model's own code)"
    line = source_line(eqn) or line
    return f"primitive {eqn.primitive.name!r} {where}" + (f" at {line}" if line else "")


def source_line(eqn) -> str:
    """'model.py:42:8 (__call__)': the user's line that traced eqn, or '' if unknown."""
    try:
        from jax._src import source_info_util  # noqa: PLC0415  (no public spelling)
        return str(source_info_util.summarize(eqn.source_info))
    except Exception:  # noqa: BLE001  (a location is a courtesy, never an error)
        return ""


def no_rule(method: str, eqn, why: str = "", after: str | None = None,
            line: str = "") -> NoRuleError:
    """The error for eqn; after, line: see `describe`."""
    return NoRuleError(f"{method} has no rule for {describe(eqn, after, line)}"
                       f"{': ' + why if why else ''}. Its input-dependent operands would "
                       f"otherwise get a plain gradient, which is not {method}; the "
                       f"primitives each method supports are listed in "
                       f"docs/propagation_primitives.md.")


def structural_ok(eqn, live: list[bool]) -> bool:
    """A structural primitive whose live operands are all data operands."""
    allowed = shared.STRUCTURAL.get(eqn.primitive.name, ())
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
        if any(invals) and (e.primitive.name not in shared.ELEMENTWISE
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


def trace(fn, params, x, *, tree: bool = False):
    """fn(params, x)'s jaxpr with params' leaves then x as inputs -> (closed, leaves), or
    (closed, leaves, output treedef) with tree=True (fn may then return a pytree of
    arrays: logits and layer activations); otherwise the output must be one array."""
    leaves, treedef = jax.tree.flatten(params)
    closed, out = jax.make_jaxpr(
        lambda ps, x: fn(jax.tree.unflatten(treedef, ps), x), return_shape=True)(leaves, x)
    if tree:
        return closed, leaves, jax.tree.structure(out)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"fn must return one (N, K) array of logits; got "
                         f"{jax.tree.structure(out)}")
    return closed, leaves


def bind(eqn, invals) -> list:
    return interpret.bind(eqn, invals)
