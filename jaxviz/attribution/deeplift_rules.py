"""DeepLIFT's multipliers as a rewrite of the traced program (Shrikumar et al. 2017).

`DeepLiftFn(fn)(params, x, x0) -> (fn(params, x), fn(params, x0))`: the same values, but
the gradient of the first output with respect to x is DeepLIFT's multiplier m, so
`(x - x0) * m` sums to `f(x) - f(x0)` (summation-to-delta). Every value of the program
is evaluated twice, at the input and at the reference (the baseline), as a `Pair`; the
backward pass is one ordinary reverse pass in which
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
Reveal-cancel is not implemented.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from jaxviz.attribution import program
from jaxviz.core import compile as compile_lib
from jaxviz.core import interpret

EPS = 1e-10  # |x - x0| below which the plain gradient is used (Captum's default)
_ONE_LIVE_LINEAR = ("mul", "conv_general_dilated", "dot_general")
_ADDITIVE = ("add", "sub", "neg", "add_any", "reduce_sum", "reduce_window_sum", "cumsum")


@dataclasses.dataclass(frozen=True)
class Pair:
    """A value that depends on the input: `a` at the input, `a0` at the reference."""
    a: jax.Array
    a0: jax.Array


def _unpack(invals, which: str) -> list:
    return [getattr(v, which) if isinstance(v, Pair) else v for v in invals]


def _linear(eqn, invals):
    return [Pair(*o) for o in zip(program.bind(eqn, _unpack(invals, "a")),
                                  program.bind(eqn, _unpack(invals, "a0")))]


def _vjp(f, x, g):
    """g pulled back through f at x, with the compile policy's fast VJPs."""
    return jax.vjp(compile_lib.fast_model(f), x)[1](g)[0]


def _rescale(f, x: Pair) -> Pair:
    """f elementwise with the rescale rule for its multiplier, computed in the forward
    pass (fused with the op that feeds f) so the backward is one multiplication."""
    y0 = f(x.a0)
    dx = x.a - x.a0
    small = jnp.abs(dx) < EPS
    slope = jax.jvp(f, (x.a,), (jnp.ones_like(x.a),))[1]
    m = jnp.where(small, slope, (f(x.a) - y0) / jnp.where(small, 1, dx))

    @jax.custom_vjp
    def unit(xa, m):
        return f(xa)

    unit.defvjp(lambda xa, m: (f(xa), m), lambda m, g: (g * m, jnp.zeros_like(m)))
    return Pair(unit(x.a, lax.stop_gradient(m)), y0)


def _max_pool(f, x: Pair) -> Pair:
    """Captum's max-pool rule (module docstring) for the max-like reduction f."""
    @jax.custom_vjp
    def pool(xa, xa0):
        return f(xa)

    def fwd(xa, xa0):
        y = f(xa)
        return y, (xa, xa0, y, f(xa0))

    def bwd(res, g):
        xa, xa0, y, y0 = res
        ymax = jnp.maximum(y, y0)
        shares = _vjp(f, xa, g * (ymax - y0)) + _vjp(f, xa0, g * (y - ymax))
        dx = xa - xa0
        small = jnp.abs(dx) < EPS
        m = jnp.where(small, _vjp(f, xa, g), shares / jnp.where(small, 1, dx))
        return m, jnp.zeros_like(xa0)

    pool.defvjp(fwd, bwd)
    return Pair(pool(x.a, x.a0), f(x.a0))


def _product(f, u: Pair, v: Pair) -> Pair:
    """The bilinear f(u, v) with the exact split of its change between u and v."""
    @jax.custom_vjp
    def prod(ua, va, ua0, va0):
        return f(ua, va)

    def fwd(ua, va, ua0, va0):
        return f(ua, va), (ua, va, ua0, va0)

    def bwd(res, g):
        ua, va, ua0, va0 = res
        u_mid, v_mid = (ua + ua0) / 2, (va + va0) / 2
        mu = _vjp(lambda a: f(a, v_mid), ua, g)
        mv = _vjp(lambda b: f(u_mid, b), va, g)
        return mu, mv, jnp.zeros_like(ua0), jnp.zeros_like(va0)

    prod.defvjp(fwd, bwd)
    return Pair(prod(u.a, v.a, u.a0, v.a0), f(u.a0, v.a0))


def _one_operand(eqn, invals, i):
    """eqn as a function of its operand i, the others fixed."""
    def f(x):
        args = list(invals)
        args[i] = x
        return program.bind(eqn, args)[0]
    return f


def _calls(eqn, invals):
    """Claims a call that is one elementwise activation; other calls are inlined."""
    live = [isinstance(v, Pair) for v in invals]
    if not any(live) or not program.elementwise_call(eqn, live):
        return None
    i = live.index(True)
    consts = _unpack(invals, "a")
    return [_rescale(_one_operand(eqn, consts, i), invals[i])]


def _default(eqn, invals):
    live = [isinstance(v, Pair) for v in invals]
    if not any(live):
        return program.bind(eqn, invals)
    name, n_live = eqn.primitive.name, sum(live)
    if name in program.STRUCTURAL:
        if not program.structural_ok(eqn, live):
            raise program.no_rule("DeepLIFT", eqn, "an index or predicate depends on the input")
        return _linear(eqn, invals)
    if name in _ADDITIVE or (name == "div" and live == [True, False]):
        return _linear(eqn, invals)
    if name in _ONE_LIVE_LINEAR:
        if n_live == 1:
            return _linear(eqn, invals)
        return [_product(lambda u, v: program.bind(eqn, [u, v])[0], *invals)]
    i = live.index(True)
    if name in program.MAX_LIKE and n_live == 1:
        return [_max_pool(_one_operand(eqn, invals, i), invals[i])]
    if (name in program.ELEMENTWISE and n_live == 1 and len(eqn.outvars) == 1
            and eqn.outvars[0].aval.shape == eqn.invars[i].aval.shape
            and jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.floating)):
        return [_rescale(_one_operand(eqn, invals, i), invals[i])]
    raise program.no_rule("DeepLIFT", eqn)


_RULES = {name: _calls for name in program.CALL_NAMES}


class DeepLiftFn:
    """fn(params, x) -> logits, rewritten: (params, x, x0) -> (logits at x, logits at x0),
    with DeepLIFT's multipliers as the gradient of the first with respect to x. Equal
    (and hash-equal) for equal fn, so it can be a static jit argument."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = f"deeplift({getattr(fn, '__name__', type(fn).__name__)})"

    def __eq__(self, other):
        return isinstance(other, DeepLiftFn) and self.fn == other.fn

    def __hash__(self):
        return hash((DeepLiftFn, self.fn))

    def __call__(self, params, x, x0):
        closed, leaves = program.trace(self.fn, params, x)
        out, = interpret.evaluate(closed, [*leaves, Pair(x, x0)], _RULES, default=_default,
                                  custom="inline", remat="inline")
        return (out.a, out.a0) if isinstance(out, Pair) else (out, out)
