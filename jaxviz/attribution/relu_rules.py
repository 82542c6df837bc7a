"""Guided backprop and deconvnet: swap every ReLU's backward rule without editing the model.

`fn` is traced to a jaxpr and re-evaluated with each ReLU replaced by a `jax.custom_vjp`
version whose forward is unchanged. A ReLU is recognised as
- `custom_jvp_call` whose body computes `max(x, 0)` (how `jax.nn.relu`, `nnx.relu` and
  `linen.relu` appear), and
- a bare `max(x, 0)` (e.g. `jnp.maximum(x, 0.0)`),
also inside `jit`/`pjit`/`closed_call` sub-jaxprs, which are inlined. ReLUs inside
control flow (`scan`, `while`, `cond`) keep their ordinary rule.

Backward rules (cotangent g at the ReLU's output, x its input):
    plain:    g * (x > 0)
    guided:   g * (x > 0) * (g > 0)   (Springenberg et al. 2015)
    deconv:   g * (g > 0)             (Zeiler & Fergus 2014)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

RULES = ("guided", "deconvnet")
_INLINED = ("jit", "pjit", "closed_call", "core_call")


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


def _relu_operand(eqn):
    return eqn.invars[1] if _is_zero(eqn.invars[0]) else eqn.invars[0]


def _body_is_relu(jaxpr) -> bool:
    """True when a one-input jaxpr computes max(input, 0), possibly through nested jits."""
    if len(jaxpr.invars) != 1 or len(jaxpr.outvars) != 1 or len(jaxpr.eqns) != 1:
        return False
    eqn = jaxpr.eqns[0]
    if eqn.outvars[0] is not jaxpr.outvars[0]:
        return False
    if _is_bare_relu(eqn):
        return _relu_operand(eqn) is jaxpr.invars[0]
    if eqn.primitive.name in _INLINED and eqn.invars == [jaxpr.invars[0]]:
        return _body_is_relu(_sub_jaxpr(eqn).jaxpr)
    return False


def _sub_jaxpr(eqn):
    sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    return sub if isinstance(sub, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(sub, ())


def _eval(jaxpr, consts, args, relu):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = val
    for v, val in zip(jaxpr.invars, args):
        env[v] = val
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "custom_jvp_call" and _body_is_relu(_sub_jaxpr(eqn).jaxpr):
            outs = [relu(read(eqn.invars[0]))]
        elif _is_bare_relu(eqn):
            outs = [relu(read(_relu_operand(eqn)))]
        elif name in _INLINED:
            sub = _sub_jaxpr(eqn)
            outs = _eval(sub.jaxpr, sub.consts, [read(v) for v in eqn.invars], relu)
        else:
            ans = eqn.primitive.bind(*[read(v) for v in eqn.invars],
                                     **eqn.primitive.get_bind_params(eqn.params))
            outs = ans if eqn.primitive.multiple_results else [ans]
        for v, val in zip(eqn.outvars, outs):
            env[v] = val
    return [read(v) for v in jaxpr.outvars]


def with_relu_rule(fn, rule: str):
    """fn(*args) -> the same values, with every ReLU's backward rule replaced by `rule`.

    rule: "guided" or "deconvnet". Works on any function of arrays/pytrees (a Probe, an
    apply_fn); it is traced to a jaxpr at each call, so wrap the caller in `jax.jit`.
    """
    if rule not in _RELUS:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    relu = _RELUS[rule]

    def modified(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args), relu)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return modified
