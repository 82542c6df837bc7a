"""The one jaxpr interpreter: evaluate a closed jaxpr with a table of per-primitive rules.

    outs = interpret.evaluate(closed, args, {"max": my_max_rule})
    fast_fn = interpret.rewrite(fn, rules)     # fn(*args) traced once, re-evaluated with rules

Every jaxpr walker in jaxviz is a rule table (and at most a `default`) on this module:
`propagation.relu_rules` (ReLU backward rules), `core.fastgrad` (XLA-CPU-friendly VJPs),
`occlusion.incremental` (values are (base, change) pairs) and `arch` (values are integer
ids of a data-flow graph). Call primitives are handled here and nowhere else.

Values are opaque: the interpreter only moves them between equations. `lift` turns a
literal's value or a closed jaxpr's constant into a value; rules and `default` make the
others.

Rules: `rules[primitive name](eqn, invals) -> outvals` (a sequence, one per `eqn.outvars`,
also for single-result primitives) or None ("no rule here": the equation continues as if
the table had none). Rules see a call primitive before it is inlined, so a rule may claim a
whole call (relu_rules claims a `custom_jvp_call` whose body is a ReLU).

Call primitives (`CALLS`, from `jaxviz.core.jax_compat`, which knows each JAX release's
names), when no rule claims them:
- CALL (`jit`, `closed_call`/`eval_jaxpr`, `call`): always inlined: the body's
  equations are evaluated in place, with the rules.
- CUSTOM (`custom_jvp_call`, `custom_vjp_call`, `custom_vjp_call_jaxpr`), by `custom`:
  "keep" (default): the equation goes to `default` like any primitive; the standard default
  (`bind`) re-binds it with its params, so the user's custom derivative survives and rules
  do not reach into its body. "inline": the body is evaluated in place with the rules and
  the custom derivative is dropped (JAX differentiates the body); for walkers that need
  the structure, or whose values are not JAX arrays.
- REMAT (`checkpoint`/`remat2`), by `remat`: "keep" (default): the body is evaluated with
  the rules inside `jax.checkpoint` with the equation's policy and prevent_cse, so the
  rematerialization survives (needs JAX values); "inline": evaluated in place.
Other higher-order primitives (`scan`, `while`, `cond`) are ordinary primitives: rules do
not reach into their bodies.

Name stacks: an equation inside an inlined body reaches rules and `default` with its
`source_info.name_stack` prefixed by the enclosing calls' name stacks (the call's own name
is not added), so `str(eqn.source_info.name_stack)` is its full scope path.
"""
from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from jax.extend import core as jcore

from jaxviz.core import jax_compat as compat

CALL, CUSTOM, REMAT = compat.CALL, compat.CUSTOM, compat.REMAT
CALLS = compat.CALL_KINDS
MODES = ("keep", "inline")

Rule = Callable[[Any, list], "Sequence | None"]

_ENCLOSING: contextvars.ContextVar = contextvars.ContextVar("jaxpr", default=None)


def enclosing_jaxpr() -> jcore.Jaxpr | None:
    """For a rule or `default` being called: the jaxpr whose equation it was handed (an
    inlined body's own jaxpr), so a rule can look at an equation's neighbours (relu_rules
    tells a normalisation's clamp from an activation by what its result feeds). None
    outside `evaluate`."""
    return _ENCLOSING.get()


def bind(eqn, invals) -> list:
    """The equation's own primitive on invals, under the equation's context: [outvals]."""
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **compat.bind_params(eqn))
    return list(out) if eqn.primitive.multiple_results else [out]


def _same(value):
    return value


def body(eqn) -> jcore.ClosedJaxpr | None:
    """The jaxpr a call primitive's equation calls (None for other primitives)."""
    if eqn.primitive.name not in CALLS:
        return None
    for key in compat.BODY_PARAMS:
        sub = compat.closed_jaxpr(eqn.params.get(key))
        if sub is not None:
            return sub
    return None


def evaluate(closed: jcore.ClosedJaxpr, args: Sequence, rules: Mapping[str, Rule] | None = None,
             *, lift: Callable[[Any], Any] = _same, default: Rule = bind,
             custom: str = "keep", remat: str = "keep") -> list:
    """closed's outputs, one value per outvar, for one value per invar in `args`.

    rules: {primitive name: rule(eqn, invals) -> outvals or None} (see the module docstring).
    lift: a literal's value or a constant of a (sub-)jaxpr -> a value (default: itself).
    default: (eqn, invals) -> outvals for every equation no rule claims and no call
        handling takes (default: `bind`, the primitive itself under the current trace).
    custom, remat: "keep" or "inline", how custom-derivative calls and checkpoints are
        evaluated (module docstring).
    """
    for name, mode in (("custom", custom), ("remat", remat)):
        if mode not in MODES:
            raise ValueError(f"{name} must be one of {MODES}; got {mode!r}")
    if not compat.is_closed_jaxpr(closed):
        raise TypeError(f"closed: expected a closed jaxpr (jax.make_jaxpr's result, a "
                        f"{jcore.ClosedJaxpr.__name__} on this JAX); got "
                        f"{type(closed).__name__}")
    return _Interpreter(dict(rules or {}), lift, default, custom, remat).run(closed, list(args))


@dataclasses.dataclass(frozen=True)
class _Interpreter:
    rules: dict
    lift: Callable
    default: Callable
    custom: str
    remat: str

    def run(self, closed, args, prefix=None) -> list:
        jaxpr = closed.jaxpr
        if len(args) != len(jaxpr.invars):
            raise ValueError(f"args: expected {len(jaxpr.invars)} values (one per input of the "
                             f"jaxpr); got {len(args)}")
        env = dict(zip(jaxpr.constvars, map(self.lift, closed.consts)))
        env.update(zip(jaxpr.invars, args))

        def read(v):
            return self.lift(v.val) if isinstance(v, jcore.Literal) else env[v]

        for eqn in jaxpr.eqns:
            if prefix is not None and len(prefix):
                eqn = eqn.replace(source_info=eqn.source_info.replace(
                    name_stack=prefix + eqn.source_info.name_stack))
            token = _ENCLOSING.set(jaxpr)
            try:
                outs = list(self.equation(eqn, [read(v) for v in eqn.invars]))
            finally:
                _ENCLOSING.reset(token)
            if len(outs) != len(eqn.outvars):
                raise ValueError(f"a rule for {eqn.primitive.name} returned {len(outs)} values "
                                 f"for {len(eqn.outvars)} outputs")
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    def equation(self, eqn, invals):
        rule = self.rules.get(eqn.primitive.name)
        if rule is not None:
            outs = rule(eqn, invals)
            if outs is not None:
                return outs
        kind = CALLS.get(eqn.primitive.name)
        sub = body(eqn) if kind else None
        if sub is None or (kind == CUSTOM and self.custom == "keep"):
            return self.default(eqn, invals)
        prefix = eqn.source_info.name_stack
        if kind == REMAT and self.remat == "keep":
            return jax.checkpoint(lambda *a: self.run(sub, list(a), prefix),
                                  prevent_cse=eqn.params.get("prevent_cse", True),
                                  policy=eqn.params.get("policy"))(*invals)
        return self.run(sub, invals, prefix)


def leaf_eqns(closed: jcore.ClosedJaxpr, *, custom: str = "inline",
              remat: str = "inline") -> list:
    """The equations `evaluate` hands to `default` (calls inlined), in order, each once per
    time it is reached, with full name stacks."""
    seen = []

    def visit(eqn, invals):
        seen.append(eqn)
        return [None] * len(eqn.outvars)
    evaluate(closed, [None] * len(closed.jaxpr.invars), default=visit,
             lift=lambda _: None, custom=custom, remat=remat)
    return seen


@dataclasses.dataclass(frozen=True)
class First:
    """Rules for one primitive tried in order; the first that returns outvals wins."""
    rules: tuple

    def __call__(self, eqn, invals):
        for rule in self.rules:
            outs = rule(eqn, invals)
            if outs is not None:
                return outs
        return None


def compose(*tables: Mapping[str, Rule]) -> dict:
    """One rule table from several: where tables share a primitive, earlier tables' rules are
    tried first. Evaluating with compose(a, b) is one pass doing what evaluating with a,
    then re-evaluating the result with b, does, as long as b's rules do not apply to the
    equations that a's rules emit."""
    merged: dict = {}
    for table in tables:
        for name, rule in table.items():
            if not isinstance(name, str):
                raise TypeError(f"rule tables are keyed by primitive name (str); got {name!r}")
            if name not in merged:
                merged[name] = rule
            else:
                old = merged[name].rules if isinstance(merged[name], First) else (merged[name],)
                merged[name] = First(old + (rule,))
    return merged


class Rewritten:
    """fn(*args, **kwargs) traced to a jaxpr at each call and re-evaluated with `rules` under
    the current trace: the same pytree of outputs. Equal (and hash-equal) for equal
    (fn, rules, options), so it can be a static jit argument."""

    def __init__(self, fn: Callable, rules: Mapping[str, Rule], custom: str = "keep",
                 remat: str = "keep"):
        self.fn, self.rules, self.custom, self.remat = fn, dict(rules), custom, remat
        self.__wrapped__ = fn
        self.__name__ = f"rewritten({getattr(fn, '__name__', type(fn).__name__)})"

    def _key(self):
        return (self.fn, tuple(sorted(self.rules.items())), self.custom, self.remat)

    def __eq__(self, other):
        return isinstance(other, Rewritten) and self._key() == other._key()

    def __hash__(self):
        return hash((Rewritten,) + self._key())

    def __repr__(self):
        return f"interpret.rewrite({self.fn!r}, rules={sorted(self.rules)})"

    def __call__(self, *args, **kwargs):
        flat, in_tree = jax.tree.flatten((args, kwargs))

        def flat_fn(*leaves):
            a, k = jax.tree.unflatten(in_tree, leaves)
            return self.fn(*a, **k)

        closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*flat)
        outs = evaluate(closed, flat, self.rules, custom=self.custom, remat=self.remat)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


def rewrite(fn: Callable, rules: Mapping[str, Rule], *, custom: str = "keep",
            remat: str = "keep") -> Rewritten:
    """fn re-evaluated with `rules` (see `Rewritten`). Rewriting a `Rewritten` with the same
    options composes the tables (its own rules first), so stacked rewrites run as one pass."""
    if not callable(fn):
        raise TypeError(f"fn: expected a callable; got {type(fn).__name__}")
    for name, mode in (("custom", custom), ("remat", remat)):
        if mode not in MODES:
            raise ValueError(f"{name} must be one of {MODES}; got {mode!r}")
    if isinstance(fn, Rewritten) and (fn.custom, fn.remat) == (custom, remat):
        return Rewritten(fn.fn, compose(fn.rules, rules), custom, remat)
    return Rewritten(fn, compose(rules), custom, remat)
