"""DeepLIFT's multipliers as a rewrite of the traced program (Shrikumar et al. 2017).

`DeepLiftFn(fn)(params, x, x0) -> (fn(params, x), fn(params, x0))`: the same values, but
the gradient of the first output with respect to x is DeepLIFT's multiplier m, so
`(x - x0) * m` sums to `f(x) - f(x0)` (summation-to-delta). Every input-dependent value
of the program is a `Pair`: its value at the input and at the reference (the baseline;
one shared baseline is evaluated on a batch of 1, see `DeepLiftFn`); the backward pass
is one ordinary reverse pass in which
- linear ops (conv and dense with constant weights, add, sub, mul/div by constants, sums,
  sum pooling, reshapes and other structural ops) keep their gradient, as in Captum;
- every elementwise nonlinearity of one input-dependent operand (relu, tanh, sigmoid,
  exp, ..., max(x, c)) and every call that computes one elementwise (jax.nn.relu,
  leaky_relu, silu: treated as one unit, like a Captum module) gets the rescale rule
  m_out -> m_out * (f(x) - f(x0)) / (x - x0), or the plain gradient where
  |x - x0| < eps (Captum's eps = 1e-10);
- max-like reductions (max pooling, global max) get Captum's max-pool rule: with
  y = pool(x), y0 = pool(x0) and ymax = max(y, y0), the change ymax - y0 goes to the
  input's argmax and y - ymax to the reference's argmax, divided by x - x0 (the plain
  gradient where |x - x0| < eps). Windows that overlap add up their shares (Captum's
  unpool writes one of them); the sum over inputs is y - y0 either way;
- products of two input-dependent values (mul, and conv/dot_general with two such
  operands) split the change exactly: d(ab) = da (b + b0)/2 + (a + a0)/2 db.
Anything else that depends on the input (division by an input-dependent value, sort,
control flow, ...) is a `program.NoRuleError` naming the primitive and the layer.
Multipliers of nonlinearities and of tiling max pools are computed in the forward pass,
so the backward pass costs what the model's gradient costs.

rule="reveal_cancel" (`DeepLiftFn(fn, rule)`) gives every nonlinearity fed by a conv or
dense layer the reveal-cancel rule instead (section 3.5.3; `deeplift_reveal`): the
positive and negative contributions to its input's change are followed apart.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from jaxviz.core import compile as compile_lib
from jaxviz.core import interpret
from jaxviz.propagation import deeplift_pool, deeplift_reveal, program, shared

EPS = 1e-10  # |x - x0| below which the plain gradient is used (Captum's default)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A value that depends on the input: `a` at the input, `a0` at the reference (with
    a batch of 1 when one reference serves every image)."""
    a: jax.Array
    a0: jax.Array
    feed: deeplift_reveal.Feed | None = None  # reveal-cancel: the layer that computed it


def _unpack(invals, which: str) -> list:
    return [getattr(v, which) if isinstance(v, Pair) else v for v in invals]


def _vjp(f, x, g):
    """g pulled back through f at x, with the compile policy's fast VJPs."""
    return jax.vjp(compile_lib.fast_model(f), x)[1](g)[0]


def _rescale(f, x: Pair, y0) -> Pair:
    """f elementwise with the rescale rule for its multiplier, computed in the forward
    pass (fused with the op that feeds f) so the backward is one multiplication."""
    dx = x.a - x.a0
    small = jnp.abs(dx) < EPS
    slope = jax.jvp(f, (x.a,), (jnp.ones_like(x.a),))[1]
    m = jnp.where(small, slope, (f(x.a) - y0) / jnp.where(small, 1, dx))

    @jax.custom_vjp
    def unit(xa, m):
        return f(xa)

    unit.defvjp(lambda xa, m: (f(xa), m), lambda m, g: (g * m, jnp.zeros_like(m)))
    return Pair(unit(x.a, lax.stop_gradient(m)), y0)


def _max_pool(eqn, f, x: Pair, y0) -> Pair:
    """Captum's max-pool rule (module docstring) for the max-like reduction f."""
    win = deeplift_pool.windows(eqn, eqn.invars[0].aval.shape)
    if win is not None:  # each input in one window: factors from the forward pass
        c = lax.stop_gradient(deeplift_pool.factors(win, x.a, x.a0, EPS))

        @jax.custom_vjp
        def tiled(xa, c):
            return f(xa)

        tiled.defvjp(lambda xa, c: (f(xa), c),
                     lambda c, g: (deeplift_pool.multiplied(win, c, g), jnp.zeros_like(c)))
        return Pair(tiled(x.a, c), y0)

    @jax.custom_vjp
    def pool(xa, xa0):
        return f(xa)

    def bwd(res, g):
        xa, xa0 = res
        xa0 = jnp.broadcast_to(xa0, xa.shape)
        y, y0 = f(xa), f(xa0)
        ymax = jnp.maximum(y, y0)
        shares = _vjp(f, xa, g * (ymax - y0)) + _vjp(f, xa0, g * (y - ymax))
        dx = xa - xa0
        small = jnp.abs(dx) < EPS
        m = jnp.where(small, _vjp(f, xa, g), shares / jnp.where(small, 1, dx))
        return m, jnp.zeros_like(res[1])

    pool.defvjp(lambda xa, xa0: (f(xa), (xa, xa0)), bwd)
    return Pair(pool(x.a, x.a0), y0)


def _product(f, u: Pair, v: Pair, y0) -> Pair:
    """The bilinear f(u, v) with the exact split of its change between u and v."""
    @jax.custom_vjp
    def prod(ua, va, ua0, va0):
        return f(ua, va)

    def bwd(res, g):
        ua, va, ua0, va0 = res
        u_mid, v_mid = (ua + ua0) / 2, (va + va0) / 2
        mu = _vjp(lambda a: f(a, v_mid), ua, g)
        mv = _vjp(lambda b: f(u_mid, b), va, g)
        return mu, mv, jnp.zeros_like(ua0), jnp.zeros_like(va0)

    prod.defvjp(lambda *args: (f(*args[:2]), args), bwd)
    return Pair(prod(u.a, v.a, u.a0, v.a0), y0)


def _quotient(u: Pair, v: Pair, y0) -> Pair:
    """u / v with the exact (Shapley) split of its change between u and v:
    d(u/v) = du (1/v + 1/v0)/2 - dv (u + u0) / (2 v v0). VJPs of the products take the
    multipliers back to each operand's shape (a division may broadcast size-1 axes)."""
    @jax.custom_vjp
    def quot(ua, va, ua0, va0):
        return ua / va

    def bwd(res, g):
        ua, va, ua0, va0 = res
        wu = (1 / va + 1 / va0) / 2
        wv = -(ua + ua0) / (2 * va * va0)
        mu = _vjp(lambda a: a * wu, ua, g)
        mv = _vjp(lambda b: b * wv, va, g)
        return mu, mv, jnp.zeros_like(ua0), jnp.zeros_like(va0)

    quot.defvjp(lambda *args: (args[0] / args[1], args), bwd)
    return Pair(quot(u.a, v.a, u.a0, v.a0), y0)


def _one_operand(eqn, invals, i):
    """eqn as a function of its operand i, the others fixed."""
    def f(x):
        args = list(invals)
        args[i] = x
        return program.bind(eqn, args)[0]
    return f


class _Mismatch(Exception):
    """The program at batch 1 does not line up with the program at batch N."""


def _paired(eqn, invals):
    return program.bind(eqn, _unpack(invals, "a0"))


class _Recording:
    """References computed on their own batch and kept, in equation order."""

    def __init__(self):
        self.tape = []

    def __call__(self, eqn, invals):
        outs = _paired(eqn, invals)
        self.tape.append((eqn.primitive.name, outs))
        return outs


class _Replaying:
    """The recorded references of a batch-1 run, for the same program at batch n."""

    def __init__(self, tape, n: int):
        self.tape, self.n, self.pos = tape, n, 0

    def __call__(self, eqn, invals):
        if self.pos >= len(self.tape):
            raise _Mismatch
        name, outs = self.tape[self.pos]
        self.pos += 1
        if name != eqn.primitive.name or len(outs) != len(eqn.outvars) or any(
                o.shape[:1] != (1,) or v.aval.shape[:1] != (self.n,)
                or o.shape[1:] != v.aval.shape[1:] for o, v in zip(outs, eqn.outvars)):
            raise _Mismatch
        return outs


class _Evaluation:
    """The rule table; `refs(eqn, invals)` gives a live equation's reference outputs."""

    def __init__(self, refs, rule: str = "rescale"):
        self.refs, self.reveal = refs, rule == "reveal_cancel"
        self.rules = {name: self.call for name in interpret.CALLS}
        self.last_layer = None  # the last layer an input-dependent op was seen in
        self.call_line = ""  # the user's line of the last call inlined (jnp.sort, ...)

    def linear(self, eqn, invals):
        outs = program.bind(eqn, _unpack(invals, "a"))
        feed = None
        if self.reveal and len(outs) == 1:
            live = [isinstance(v, Pair) for v in invals]
            pairs = [(v.a, v.a0, v.feed) if isinstance(v, Pair) else None for v in invals]
            feed = deeplift_reveal.feed_of(eqn, invals, live, pairs)
        return [Pair(o, r, feed) for o, r in zip(outs, self.refs(eqn, invals))]

    def nonlinear(self, f, x: Pair, y0) -> Pair:
        """f elementwise: reveal-cancel where a layer feeds x, else the rescale rule."""
        if x.feed is None:
            return _rescale(f, x, y0)
        mp, mn = deeplift_reveal.multipliers(f, x.a, x.a0, y0, x.feed, EPS)
        y = deeplift_reveal.unit(f(x.a), x.feed, lax.stop_gradient(mp), lax.stop_gradient(mn))
        return Pair(y, y0)

    def call(self, eqn, invals):
        """Claims a call that is one elementwise activation; other calls are inlined."""
        self.call_line = program.source_line(eqn) or self.call_line
        live = [isinstance(v, Pair) for v in invals]
        if not any(live) or not program.elementwise_call(eqn, live):
            return None
        i = live.index(True)
        f = _one_operand(eqn, _unpack(invals, "a"), i)
        return [self.nonlinear(f, invals[i], self.refs(eqn, invals)[0])]

    def default(self, eqn, invals):
        live = [isinstance(v, Pair) for v in invals]
        if not any(live):
            return program.bind(eqn, invals)
        layer = program.layer_of(eqn)
        self.last_layer = layer if layer is not None else self.last_layer
        rule = (REVEAL_CANCEL if self.reveal else RULES).get(eqn.primitive.name)
        if rule is None:
            raise self.no_rule(eqn)
        return rule(self, eqn, invals, live)

    def no_rule(self, eqn, why: str = "") -> program.NoRuleError:
        return program.no_rule("DeepLIFT", eqn, why, after=self.last_layer, line=self.call_line)

    def elementwise(self, eqn, invals, live) -> list:
        """A nonlinearity of one input-dependent operand: rescale (or reveal-cancel)."""
        i = live.index(True)
        if not (sum(live) == 1 and len(eqn.outvars) == 1
                and eqn.outvars[0].aval.shape == eqn.invars[i].aval.shape
                and jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.floating)):
            raise self.no_rule(eqn)
        f = _one_operand(eqn, invals, i)
        return [self.nonlinear(f, invals[i], self.refs(eqn, invals)[0])]


# ---- the rule table: {primitive name: rule(evaluation, eqn, invals, live) -> outvals} ----

def rule(name: str, summary: str):
    """Marks a table entry with its short name and the line `table` writes for it."""
    def mark(f):
        f.rule_name, f.summary = name, summary
        return f
    return mark


@rule("linear",
      "linear: its gradient (as Captum)")
def _linear(ev, eqn, invals, live):
    return ev.linear(eqn, invals)


@rule("move",
      "moves multipliers as its gradient does (indices and predicates constant)")
def _structural(ev, eqn, invals, live):
    if not program.structural_ok(eqn, live):
        raise ev.no_rule(eqn, "an index or predicate depends on the input")
    return ev.linear(eqn, invals)


@rule("linear / product split",
      "constant weights: linear; two input-dependent operands (a product, attention's "
      "q.k): the exact split d(uv) = du (v + v0)/2 + (u + u0)/2 dv")
def _bilinear(ev, eqn, invals, live):
    if sum(live) == 1:
        return ev.linear(eqn, invals)
    f = lambda u, v: program.bind(eqn, [u, v])[0]  # noqa: E731
    return [_product(f, *invals, ev.refs(eqn, invals)[0])]


@rule("linear / quotient split",
      "by a constant: linear; c / x: rescale; u / v (softmax's normalisation): the "
      "exact split, m_u = (1/v + 1/v0)/2, m_v = -(u + u0) / (2 v v0)")
def _div(ev, eqn, invals, live):
    if live == [True, False]:
        return ev.linear(eqn, invals)
    if live == [False, True]:
        return ev.elementwise(eqn, invals, live)
    return [_quotient(*invals, ev.refs(eqn, invals)[0])]


@rule("identity",
      "identity: multipliers pass (softmax's and log_softmax's max shift; summation-to-"
      "delta needs the shift's change)")
def _identity(ev, eqn, invals, live):
    x = invals[0]
    return [Pair(x.a, ev.refs(eqn, invals)[0])]


@rule("max-pool rule",
      "Captum's max-pool rule: the change goes to the argmax of input and reference")
def _max_like(ev, eqn, invals, live):
    if sum(live) != 1:
        raise ev.no_rule(eqn)
    i = live.index(True)
    f = _one_operand(eqn, invals, i)
    return [_max_pool(eqn, f, invals[i], ev.refs(eqn, invals)[0])]


@rule("rescale",
      "rescale: m = (f(x) - f(x0)) / (x - x0) (the gradient where |x - x0| < 1e-10)")
def _nonlinear(ev, eqn, invals, live):
    return ev.elementwise(eqn, invals, live)


_ADDITIVE = ("add", "sub", "neg", "add_any", "reduce_sum", "reduce_window_sum", "cumsum")
RULES = {
    **{name: _structural for name in shared.STRUCTURAL},
    **{name: _linear for name in _ADDITIVE},
    **{name: _bilinear for name in ("mul", *shared.WEIGHTED)},
    **{name: _max_like for name in shared.MAX_LIKE},
    **{name: _nonlinear for name in shared.NONLINEAR},
    "div": _div, "stop_gradient": _identity,
}


@rule("reveal-cancel",
      "reveal-cancel where a conv/dense layer (and affine ops by constants) feeds it: "
      "positive and negative contributions followed apart; else rescale")
def _reveal_cancel(ev, eqn, invals, live):
    return ev.elementwise(eqn, invals, live)


REVEAL_CANCEL = {**RULES, **{name: _reveal_cancel for name in shared.NONLINEAR}}


def _evaluate(fn, params, x, x0, refs, rule="rescale"):
    """(outputs at x, outputs at x0): fn's output pytree (logits, or logits and layer
    activations) evaluated on Pairs."""
    closed, leaves, tree = program.trace(fn, params, x, tree=True)
    ev = _Evaluation(refs, rule)
    outs = interpret.evaluate(closed, [*leaves, Pair(x, x0)], ev.rules, default=ev.default,
                              custom="inline", remat="inline")
    at = [o.a if isinstance(o, Pair) else o for o in outs]
    ref = [o.a0 if isinstance(o, Pair) else o for o in outs]
    return jax.tree.unflatten(tree, at), jax.tree.unflatten(tree, ref)


class DeepLiftFn:
    """fn(params, x) -> logits, rewritten: (params, x, x0) -> (logits at x, logits at x0),
    with DeepLIFT's multipliers as the gradient of the first with respect to x. Equal
    (and hash-equal) for equal fn, so it can be a static jit argument.

    x0 is (N, H, W, C) or (1, H, W, C): one reference for every image is evaluated on a
    batch of 1 (the program traced at batch 1, its live values replayed in order), so the
    reference pass costs next to nothing; a program whose equations do not line up
    across batch sizes gets the reference broadcast to N instead.
    rule: "rescale" or "reveal_cancel" (module docstring)."""

    def __init__(self, fn, rule: str = "rescale"):
        if rule not in deeplift_reveal.RULES:
            raise ValueError(f"rule must be one of {deeplift_reveal.RULES}; got {rule!r}")
        self.fn, self.rule = fn, rule
        self.__name__ = f"deeplift({getattr(fn, '__name__', type(fn).__name__)})"

    def __eq__(self, other):
        return (isinstance(other, DeepLiftFn) and self.fn == other.fn
                and self.rule == other.rule)

    def __hash__(self):
        return hash((DeepLiftFn, self.fn, self.rule))

    def __call__(self, params, x, x0):
        n = x.shape[0]
        out = None
        if x0.shape[0] == 1 < n:
            rec = _Recording()
            _evaluate(self.fn, params, x0, x0, rec)
            replay = _Replaying(rec.tape, n)
            try:
                out = _evaluate(self.fn, params, x, x0, replay, self.rule)
            except _Mismatch:
                out = None
            if replay.pos != len(rec.tape):
                out = None
        if out is None:
            out = _evaluate(self.fn, params, x, jnp.broadcast_to(x0, x.shape), _paired,
                            self.rule)
        return out[0], jax.tree.map(lambda r, a: jnp.broadcast_to(r, a.shape), out[1], out[0])
