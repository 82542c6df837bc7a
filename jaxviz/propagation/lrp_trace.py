"""LRP as a rewrite of the traced program: one backward pass carries relevance.

`LrpFn(fn, composite)(params, x)` returns fn's logits, with a backward pass that moves
relevance instead of gradients: the VJP of the target logit, seeded with the logit's own
value, is the LRP map of the input. Rules attach to primitives:
- conv_general_dilated, dot_general (one input-dependent operand, constant weights),
  reduce_sum and sum pooling: a layer with the composite's rule for its kind and name
  (`lrp_composites`), computed in its custom VJP (`lrp_rules`);
- canonizer: add/sub/mul/div by constants and neg right after such a layer (its bias, a
  BatchNorm in inference mode, a mean's division) are folded into it as
  z = s * op(x, w) + t, so the rule sees one affine layer (canonize=False: they pass
  relevance through, Zennit's Pass rule for an unfolded BatchNorm); the fold carries
  through reshapes that only add or drop size-1 axes (vmap's batching of a per-example
  conv puts one between the conv and its bias) and through transposes (a channels-last
  conv whose output a channel-first model moves back before its BatchNorm);
- add/sub of two input-dependent values (residual connections): split in proportion to
  the addends (Zennit's Norm rule);
- elementwise functions of one input-dependent value (relu, tanh, ..., and calls that
  compute one, like jax.nn.relu) and affine ops by constants elsewhere (input
  normalization): relevance passes through unchanged; so does an elementwise op of
  several values that are all elementwise functions of one value (an activation written
  inline, as jax.nn.gelu's x * (1 + tanh(...)) / 2): its relevance goes to that value,
  their nearest common ancestor through elementwise and affine ops;
- structural ops (reshape, transpose, slice, pad, concatenate, ...) and max pooling move
  relevance as their gradient does (max pooling: winner takes all, as Captum and Zennit);
- normalisers (LayerNorm, RMSNorm, a feature vector over its norm): a square root (sqrt,
  rsqrt) of a statistic, i.e. of a sum (reduce_sum) of input-dependent values, is treated
  as a constant, as Ali et al. 2022 ("XAI for Transformers: Better Explanations through
  Conservative Propagation") detach LayerNorm's 1/std: multiplying or dividing a value by
  it is an affine op by a constant, and no relevance flows into the statistics behind it.
  The rest of a LayerNorm (the centering x - mean(x) and its affine part) is linear and
  keeps its rules (residual split, sum pooling), so relevance is conserved through it.
  A normaliser used in any other way (added to, or as the input of a layer) has no rule.
Every forward value is the original program's (the rules only change the backward), so
the logits are unchanged. Anything else that depends on the input raises
`program.NoRuleError` naming the primitive and the layer: never a silent gradient.

Values that depend on the input are `Live`: the array, whether it is known >= 0 (after a
ReLU: the rules then drop their x- terms), the input's bounds carried through elementwise
affine ops and reshapes (for ZBox), and the layer being folded.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxviz.core import interpret
from jaxviz.propagation import program, shared
from jaxviz.propagation.lrp_composites import Composite
from jaxviz.propagation.lrp_rules import Layer, Rule, ZBox, stabilize

_UNARY_DATA = tuple(k for k, v in shared.STRUCTURAL.items() if v == (0,))
# A statistic through one of these is a normaliser: "norm" (a factor: LayerNorm's 1/std,
# softmax's weights) or "lognorm" (a shift: log_softmax's log-sum-exp).
_ROOTS = {"sqrt": "norm", "rsqrt": "norm", "log": "lognorm"}
_NORMS = ("norm", "lognorm")


@dataclasses.dataclass(frozen=True)
class Fold:
    """A linear layer z = s * op(x, w) + t being canonized: eqn is its op, index the
    input-dependent operand; bounds the (lo, hi) its rule needs (ZBox) or None."""
    eqn: Any
    index: int
    x: "Live"
    w: Any
    s: Any
    t: Any
    rule: Rule
    bounds: Any
    # The data-preserving ops since the layer's op, ("reshape", shape) for one that only
    # adds or drops size-1 axes and ("transpose", permutation): the value is the op's
    # output viewed through them.
    view: tuple = ()

    @property
    def base(self) -> tuple:
        return tuple(self.eqn.outvars[0].aval.shape)

    @property
    def shapes(self) -> list:
        """The value's shape before each step of `view`, then after the last."""
        out = [self.base]
        for kind, arg in self.view:
            out.append(tuple(arg) if kind == "reshape" else tuple(out[-1][p] for p in arg))
        return out


@dataclasses.dataclass(frozen=True)
class Live:
    """stat: None (data), "stat" (a sum of input-dependent values, and what elementwise,
    affine and structural ops make of it) or "norm" (a statistic through a square root: a
    normaliser, treated as a constant)."""
    a: jax.Array
    nonneg: bool = False
    bounds: Any = None
    fold: Fold | None = None
    stat: str | None = None
    parent: Any = None  # the Live this one is an elementwise function of (activations)


@jax.custom_vjp
def _passed(x, y):
    return y


_passed.defvjp(lambda x, y: (y, None), lambda _, g: (g, jnp.zeros_like(g)))


def _ancestor(values) -> Live | None:
    """The nearest Live that every one of `values` is an elementwise function of."""
    chains = []
    for v in values:
        chain = []
        while v is not None:
            chain.append(v)
            v = v.parent
        chains.append(chain)
    others = [{id(v) for v in c} for c in chains[1:]]
    return next((v for v in chains[0] if all(id(v) in o for o in others)), None)


def _sg(invals) -> list:
    return [lax.stop_gradient(v.a) if isinstance(v, Live) else v for v in invals]


def _arrays(invals) -> list:
    return [v.a if isinstance(v, Live) else v for v in invals]


def _op_fn(eqn, index: int):
    """(u, w) -> the layer's primitive with u as its input-dependent operand."""
    def apply(u, w):
        if w is None:
            return program.bind(eqn, [u])[0]
        args = [w, w]
        args[index] = u
        return program.bind(eqn, args)[0]
    return apply


def _scale_axis(eqn, index: int, w_ndim: int):
    """(output axis, weight axis) along which a per-feature scale of the layer's output is
    a scale of its weights: a conv's output features, a dense layer's (x @ w) one free
    weight axis; None for other layouts."""
    if eqn.primitive.name == "conv_general_dilated" and index == 0:
        dn = eqn.params["dimension_numbers"]
        if eqn.params["feature_group_count"] == 1 and eqn.params["batch_group_count"] == 1:
            return dn.out_spec[1], dn.rhs_spec[0]
    if eqn.primitive.name == "dot_general" and index == 0:
        (_, rc), (_, rb) = eqn.params["dimension_numbers"]
        free = [a for a in range(w_ndim) if a not in rc and a not in rb]
        if len(free) == 1 and not rb:
            return len(eqn.outvars[0].aval.shape) - 1, free[0]
    return None


def _folded_weights(eqn, index: int, w, s):
    """(w, s) with s folded into w where s scales the output per feature only (BatchNorm):
    s * op(x, w) = op(x, w s), so the rules' positive and negative parts cost one pass
    of the op each instead of two."""
    if s is None or w is None:
        return w, s
    axes = _scale_axis(eqn, index, jnp.ndim(w))
    shape = jnp.shape(s)
    if axes is None or len(shape) != len(eqn.outvars[0].aval.shape):
        return w, s
    out_axis, w_axis = axes
    if any(d != 1 for k, d in enumerate(shape) if k != out_axis):
        return w, s
    per_feature = jnp.reshape(s, (-1,))
    bshape = [1] * jnp.ndim(w)
    bshape[w_axis] = per_feature.shape[0]
    return w * jnp.reshape(per_feature, bshape), None


_UNIT_RESHAPES = ("reshape", "broadcast_in_dim", "squeeze", "expand_dims")


def _unit_reshape(eqn) -> bool:
    """Whether eqn only adds or drops size-1 axes: the same data in the same order."""
    if eqn.primitive.name not in _UNIT_RESHAPES or len(eqn.invars) != 1:
        return False
    if eqn.primitive.name == "reshape" and eqn.params.get("dimensions") is not None:
        return False
    if eqn.primitive.name == "broadcast_in_dim" and list(
            eqn.params["broadcast_dimensions"]) != sorted(eqn.params["broadcast_dimensions"]):
        return False

    def core(shape):
        return [d for d in shape if d != 1]
    return core(eqn.invars[0].aval.shape) == core(eqn.outvars[0].aval.shape)


def _view_step(eqn) -> tuple | None:
    """eqn as a step of a Fold's view, or None where it changes which values go where."""
    if eqn.primitive.name == "transpose":
        return ("transpose", tuple(eqn.params["permutation"]))
    if _unit_reshape(eqn):
        return ("reshape", tuple(eqn.outvars[0].aval.shape))
    return None


def _viewed(a, view: tuple):
    """The op's output `a` through the fold's view."""
    for kind, arg in view:
        a = jnp.reshape(a, arg) if kind == "reshape" else jnp.transpose(a, arg)
    return a


def _unviewed(a, fold: Fold):
    """A value of the fold's viewed shape back in the op's output layout."""
    shapes = fold.shapes
    for k in reversed(range(len(fold.view))):
        kind, arg = fold.view[k]
        a = (jnp.transpose(a, tuple(int(i) for i in np.argsort(arg))) if kind == "transpose"
             else jnp.reshape(a, shapes[k]))
    return a


def _unreshaped(c, shape: tuple, base: tuple):
    """c (full rank against `shape`, a size-1 reshape of `base`) as one broadcastable
    against `base`: its size-1 axes move as the reshape moves them."""
    core = iter([c.shape[k] for k, d in enumerate(shape) if d != 1])
    return jnp.reshape(c, [next(core) if d != 1 else 1 for d in base])


def _to_base(c, fold: Fold):
    """A constant broadcastable against the fold's viewed value, as one broadcastable
    against the op's output: the view's steps undone in reverse."""
    if c is None or jnp.ndim(c) == 0 or not fold.view:
        return c
    shapes = fold.shapes
    c = jnp.asarray(c)
    c = jnp.reshape(c, (1,) * (len(shapes[-1]) - c.ndim) + c.shape)
    for k in reversed(range(len(fold.view))):
        kind, arg = fold.view[k]
        if kind == "transpose":
            c = jnp.transpose(c, tuple(int(i) for i in np.argsort(arg)))
        else:
            c = _unreshaped(c, shapes[k + 1], shapes[k])
    return c


def _redistribute(fold: Fold, raw):
    """raw, whose VJP is fold's rule: relevance at the output -> relevance at x."""
    lo, hi = fold.bounds if fold.bounds is not None else (None, None)
    consts = {k: jnp.asarray(v) for k, v in
              dict(w=fold.w, s=fold.s, t=fold.t, lo=lo, hi=hi).items() if v is not None}
    apply = _op_fn(fold.eqn, fold.index)

    @jax.custom_vjp
    def layer(xa, raw, c):
        return raw

    def bwd(res, R):
        xa, raw, c = res
        bounds = (c["lo"], c["hi"]) if "lo" in c else None
        w, s = _folded_weights(fold.eqn, fold.index, c.get("w"), c.get("s"))
        rx = fold.rule.relevance(Layer(apply, w, s, c.get("t")), xa, raw, R, fold.x.nonneg,
                                 bounds)
        return rx.astype(xa.dtype), jnp.zeros_like(raw), jax.tree.map(jnp.zeros_like, c)

    layer.defvjp(lambda xa, raw, c: (raw, (xa, raw, c)), bwd)
    out = layer(fold.x.a, _unviewed(raw, fold), consts)
    return _viewed(out, fold.view)


def _one(v):
    return 1.0 if v is None else v


def _refold(fold: Fold, name: str, c, live_first: bool) -> Fold:
    """fold followed by `name` with the constant c: the new (s, t)."""
    s, t = fold.s, fold.t
    if name == "mul":
        s, t = _one(s) * c, None if t is None else t * c
    elif name == "div":
        s, t = _one(s) / c, None if t is None else t / c
    elif name == "neg" or (name == "sub" and not live_first):
        s, t = -_one(s), None if t is None else -t
    if name == "add" or (name == "sub" and not live_first):
        t = c if t is None else t + c
    elif name == "sub":
        t = -c if t is None else t - c
    return dataclasses.replace(fold, s=s, t=t)


class _Evaluation:
    """One evaluation of the program: the composite, and which layer came first."""

    def __init__(self, composite: Composite, canonize: bool, canonical_forward: bool):
        self.composite, self.canonize = composite, canonize
        self.canonical = canonical_forward  # forward through s * op(x, w) + t (a check)
        self.first_seen = False
        self.last_layer = None  # the last layer an input-dependent op was seen in
        self.call_line = ""  # the user's line of the last call inlined (jnp.sort, ...)

    def emit(self, fold: Fold, raw, stat: str | None = None, parent=None) -> Live:
        if self.canonical:
            a = _op_fn(fold.eqn, fold.index)(fold.x.a, fold.w)
            a = a if fold.s is None else fold.s * a
            a = a if fold.t is None else a + fold.t
            a = _viewed(a, fold.view)
        else:
            a = _redistribute(fold, raw)
        return Live(a, fold=fold if self.canonize else None, stat=stat, parent=parent)

    def linear(self, eqn, invals, live) -> Live:
        kind = shared.LINEAR_KINDS[eqn.primitive.name]
        if sum(live) != 1:
            raise self.no_rule(eqn, "both operands depend on the input")
        i = live.index(True)
        x, w = invals[i], None if kind == "pool" else invals[1 - i]
        # Zennit's first-layer maps: the first layer of a kind the composite names
        first = not self.first_seen and kind in self.composite.first_kinds
        self.first_seen = self.first_seen or first
        rule = self.composite.rule_for(program.layer_of(eqn), kind, first)
        fold = Fold(eqn, i, x, w, None, None, rule, self.bounds(rule, eqn, x))
        return self.emit(fold, program.bind(eqn, _sg(invals))[0],
                         "stat" if kind == "pool" else None)

    @staticmethod
    def bounds(rule: Rule, eqn, x: Live):
        if not isinstance(rule, ZBox):
            return None
        if rule.low is not None and rule.high is not None:
            return (jnp.full_like(x.a, rule.low), jnp.full_like(x.a, rule.high))
        if x.bounds is None:
            raise ValueError(f"LRP's ZBox rule at {program.describe(eqn)} needs the input's "
                             f"bounds, but this layer's input is not the model input up to "
                             f"reshapes and affine ops by constants; pass "
                             f"ZBox(low=..., high=...)")
        return x.bounds

    def affine(self, eqn, invals, live) -> Live:
        """add/sub/mul/div/neg of one input-dependent value and a constant."""
        i = live.index(True)
        x = invals[i]
        if eqn.outvars[0].aval.shape != eqn.invars[i].aval.shape:
            raise self.no_rule(eqn, "a constant broadcasts the input-dependent value")
        c = invals[1 - i] if len(invals) == 2 else None
        if x.fold is not None:
            c = _to_base(c, x.fold)
            fold = _refold(x.fold, eqn.primitive.name, c, i == 0)
            return self.emit(fold, program.bind(eqn, _sg(invals))[0], x.stat, x)
        lo_hi = None
        if x.bounds is not None:
            ends = [program.bind(eqn, [b if k == i else v for k, v in enumerate(invals)])[0]
                    for b in x.bounds]
            lo_hi = (jnp.minimum(*ends), jnp.maximum(*ends))
        return dataclasses.replace(self.passed(eqn, invals, x, stat=x.stat), bounds=lo_hi)

    def passed(self, eqn, invals, x: Live, nonneg: bool = False,
               stat: str | None = None) -> Live:
        """eqn's output, with the relevance of its output handed to x unchanged."""
        if self.canonical:
            return Live(program.bind(eqn, _arrays(invals))[0], nonneg, stat=stat, parent=x)
        return Live(_passed(x.a, program.bind(eqn, _sg(invals))[0]), nonneg, stat=stat,
                    parent=x)

    def normalized(self, eqn, invals, live, norms) -> list:
        """An equation with a normaliser among its operands (see the module docstring)."""
        name = eqn.primitive.name
        if norms == live:  # normalisers only (1/std times LayerNorm's scale): no relevance
            stats = {v.stat for v in invals if isinstance(v, Live)}
            stat = "lognorm" if stats == {"lognorm"} else "norm"
            return [Live(o, stat=stat) for o in program.bind(eqn, _sg(invals))]
        k = norms.index(True)
        factor = name == "mul" or (name == "div" and k == 1)
        shift = name in ("add", "sub")
        if sum(live) == 2 and ((factor and invals[k].stat == "norm")
                               or (shift and invals[k].stat == "lognorm")):
            consts = [lax.stop_gradient(v.a) if j == k else v for j, v in enumerate(invals)]
            return [self.affine(eqn, consts, [j != k and v for j, v in enumerate(live)])]
        raise self.no_rule(eqn, "it uses a normaliser (a square root of a statistic, as "
                                "LayerNorm's std, or softmax's weights) other than as a "
                                "constant factor")

    def residual(self, eqn, invals) -> Live:
        """a + b (or a - b), both input-dependent: relevance split by the addends."""
        if self.canonical:
            stat = "stat" if invals[0].stat == invals[1].stat == "stat" else None
            return Live(program.bind(eqn, _arrays(invals))[0], stat=stat,
                        parent=_ancestor(invals))
        eps = self.composite.stabilizer

        def op(u, v):
            return program.bind(eqn, [u, v])[0]

        @jax.custom_vjp
        def split(u, v, raw):
            return raw

        def bwd(res, R):
            u, v, raw = res
            gu, gv = jax.vjp(op, u, v)[1](R / stabilize(raw, eps))
            return u * gu, v * gv, jnp.zeros_like(raw)

        split.defvjp(lambda u, v, raw: (raw, (u, v, raw)), bwd)
        a, b = invals
        stat = "stat" if a.stat == b.stat == "stat" else None  # LayerNorm: E[x^2] - E[x]^2
        return Live(split(a.a, b.a, op(*_sg(invals))), stat=stat, parent=_ancestor(invals))

    def structural(self, eqn, invals, live) -> list:
        outs = program.bind(eqn, _arrays(invals))
        unary = eqn.primitive.name in _UNARY_DATA or eqn.primitive.name == "pad"
        x = invals[0]
        if not unary or not live[0]:
            return [Live(o) for o in outs]
        nonneg = x.nonneg and (eqn.primitive.name != "pad"
                               or program.is_literal(eqn.invars[1], nonneg=True))
        bounds = [None] * len(outs) if x.bounds is None else list(zip(
            *(program.bind(eqn, [b, *invals[1:]]) for b in x.bounds)))
        fold, step = None, None if x.fold is None else _view_step(eqn)
        if step is not None:  # the bias or a BatchNorm may come after it
            fold = dataclasses.replace(x.fold, view=x.fold.view + (step,))
        return [Live(o, nonneg, b, fold=fold, stat=x.stat) for o, b in zip(outs, bounds)]

    def call(self, eqn, invals):
        """Claims a call that is one elementwise activation; other calls are inlined."""
        self.call_line = program.source_line(eqn) or self.call_line
        live = [isinstance(v, Live) for v in invals]
        if not any(live) or not program.elementwise_call(eqn, live):
            return None
        x = invals[live.index(True)]
        if x.stat == "norm":
            return self.normalized(eqn, invals, live, live)
        return [self.passed(eqn, invals, x, program.nonneg_output(eqn), x.stat)]

    def default(self, eqn, invals):
        live = [isinstance(v, Live) for v in invals]
        if not any(live):
            return program.bind(eqn, invals)
        layer = program.layer_of(eqn)
        self.last_layer = layer if layer is not None else self.last_layer
        norms = [isinstance(v, Live) and v.stat in _NORMS for v in invals]
        if any(norms):
            return self.normalized(eqn, invals, live, norms)
        rule = RULES.get(eqn.primitive.name)
        if rule is None:
            raise self.no_rule(eqn)
        return rule(self, eqn, invals, live)

    def no_rule(self, eqn, why: str = "") -> program.NoRuleError:
        return program.no_rule("LRP", eqn, why, after=self.last_layer, line=self.call_line)

    def ancestor_or_fail(self, eqn, invals) -> list:
        """An elementwise op of several input-dependent values that are all elementwise
        functions of one (an activation written inline): its relevance goes to that one."""
        x = _ancestor([v for v in invals if isinstance(v, Live)])
        if x is None:
            raise self.no_rule(eqn)
        return self.elementwise(eqn, invals, x)

    def elementwise(self, eqn, invals, x: Live) -> list:
        if not (len(eqn.outvars) == 1 and eqn.outvars[0].aval.shape == x.a.shape
                and jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.floating)):
            raise self.no_rule(eqn)
        name = eqn.primitive.name
        if x.stat == "stat" and name in _ROOTS:  # a normaliser: no relevance flows in
            return [Live(program.bind(eqn, _sg(invals))[0], stat=_ROOTS[name])]
        return [self.passed(eqn, invals, x, program.nonneg_output(eqn), x.stat)]


# ---- the rule table: {primitive name: rule(evaluation, eqn, invals, live) -> outvals} ----

def rule(name: str, summary: str):
    """Marks a table entry with its short name and the line `table` writes for it."""
    def mark(f):
        f.rule_name, f.summary = name, summary
        return f
    return mark


@rule("layer rule",
      "a layer: the composite's rule for its kind (conv, dense, pool) and name; the "
      "affine ops by constants after it (bias, BatchNorm) folded in")
def _layer(ev, eqn, invals, live):
    return [ev.linear(eqn, invals, live)]


@rule("affine / residual split",
      "one operand input-dependent: affine by a constant (folded into the layer before "
      "it, else relevance passes); two: split in proportion to the addends (residual)")
def _add_sub(ev, eqn, invals, live):
    if sum(live) == 2:
        return [ev.residual(eqn, invals)]
    return [ev.affine(eqn, invals, live)]


@rule("affine / gate / inline activation",
      "by a constant: affine (folded or passed); by a normaliser (softmax weights, "
      "1/std): a constant factor; two other values: an inline activation of their common "
      "elementwise ancestor, else no rule")
def _mul(ev, eqn, invals, live):
    if sum(live) == 1:
        return [ev.affine(eqn, invals, live)]
    return ev.ancestor_or_fail(eqn, invals)


@rule("affine", "by the constant -1: folded into the layer before it, else relevance passes")
def _neg(ev, eqn, invals, live):
    return [ev.affine(eqn, invals, live)]


@rule("affine / softmax weights",
      "by a constant: affine; x / sum (softmax's normalisation): weights that take no "
      "relevance (a constant factor where they multiply data, as Ali et al. 2022); "
      "c / x: elementwise, relevance passes")
def _div(ev, eqn, invals, live):
    if live == [True, False]:
        return [ev.affine(eqn, invals, live)]
    if live == [False, True]:
        return ev.elementwise(eqn, invals, invals[1])
    if invals[1].stat == "stat":
        return [Live(program.bind(eqn, _sg(invals))[0], stat="norm")]
    return ev.ancestor_or_fail(eqn, invals)


@rule("move",
      "moves relevance as its gradient does (indices and predicates constant)")
def _structural(ev, eqn, invals, live):
    if not program.structural_ok(eqn, live):
        raise ev.no_rule(eqn, "an index or predicate depends on the input")
    return ev.structural(eqn, invals, live)


@rule("constant",
      "a constant: no relevance flows into it (softmax's and log_softmax's max shift)")
def _stop_gradient(ev, eqn, invals, live):
    return [lax.stop_gradient(invals[0].a)]


@rule("winner takes all",
      "winner takes all (its gradient), as Captum and Zennit")
def _max_like(ev, eqn, invals, live):
    x = invals[0]
    out = program.bind(eqn, _arrays(invals))[0]
    return [Live(out, x.nonneg and eqn.primitive.name.endswith("max"))]


@rule("pass",
      "an activation: relevance passes unchanged (several operands: to their common "
      "elementwise ancestor); sqrt/rsqrt of a statistic: a normaliser (constant), log of "
      "one: a log-normaliser (a constant shift, log_softmax)")
def _nonlinear(ev, eqn, invals, live):
    if sum(live) > 1:
        return ev.ancestor_or_fail(eqn, invals)
    return ev.elementwise(eqn, invals, invals[live.index(True)])


RULES = {
    **{name: _layer for name in shared.LINEAR_KINDS},
    **{name: _structural for name in shared.STRUCTURAL},
    **{name: _max_like for name in shared.MAX_LIKE},
    **{name: _nonlinear for name in shared.NONLINEAR},
    "add": _add_sub, "sub": _add_sub, "mul": _mul, "div": _div, "neg": _neg,
    "stop_gradient": _stop_gradient,
}


class LrpFn:
    """fn(params, x) -> logits (or a pytree: logits and layer activations) whose VJP
    carries relevance under `composite`. Equal (and
    hash-equal) for equal options, so it can be a static jit argument.

    input_range: (lo, hi) of the input, the bounds ZBox uses; canonical_forward: compute
    each folded layer's output as s * op(x, w) + t (to check the canonizer)."""

    def __init__(self, fn, composite: Composite, *, canonize: bool = True,
                 input_range=(0.0, 1.0), canonical_forward: bool = False):
        self.fn, self.composite, self.canonize = fn, composite, bool(canonize)
        self.input_range = tuple(float(v) for v in input_range)
        self.canonical_forward = bool(canonical_forward)
        self.__name__ = f"lrp({getattr(fn, '__name__', type(fn).__name__)})"

    def _key(self):
        return (self.fn, self.composite, self.canonize, self.input_range,
                self.canonical_forward)

    def __eq__(self, other):
        return isinstance(other, LrpFn) and self._key() == other._key()

    def __hash__(self):
        return hash((LrpFn,) + self._key())

    def __call__(self, params, x):
        closed, leaves, tree = program.trace(self.fn, params, x, tree=True)
        lo, hi = self.input_range
        ev = _Evaluation(self.composite, self.canonize, self.canonical_forward)
        xin = Live(x, bounds=(jnp.full_like(x, lo), jnp.full_like(x, hi)))
        outs = interpret.evaluate(closed, [*leaves, xin],
                                  {name: ev.call for name in interpret.CALLS},
                                  default=ev.default, custom="inline", remat="inline")
        return jax.tree.unflatten(tree, [o.a if isinstance(o, Live) else o for o in outs])
