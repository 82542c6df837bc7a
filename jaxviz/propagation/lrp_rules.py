"""LRP rules for one linear layer z = s * op(x, w) + t (Bach et al. 2015; Montavon et al. 2019).

`op` is the layer's primitive (a convolution, a dense `dot_general`, or a weightless sum or
sum pooling), `w` its constant weights, `s` and `t` constants broadcast over its output
(s = BatchNorm's scale and friends folded in by the canonizer, t the bias and shifts).
Each rule maps the relevance R of the layer's output (N, ...) to the relevance of its
input x, as Zennit defines the rules (positive and negative parts of the effective
weights s_j w_ij, x+ = max(x, 0), x- = min(x, 0), stab(z) = z + eps * sign(z), sign(0) = 1):

    Epsilon(eps)      R_x = x * A^T (R / stab(z)),             z the layer's output
    ZPlus             R_x = x+ P^T Q + x- M^T Q,                Q = R / stab(P x+ + M x- + t+)
    AlphaBeta(a, b)   R_x = a (x+ P^T Qp + x- M^T Qp) - b (x+ M^T Qn + x- P^T Qn),
                      Qp = R / stab(P x+ + M x- + t+), Qn = R / stab(M x+ + P x- + t-)
    Gamma(g)          ZPlus-like with weights w + g w+ on positive outputs and w + g w- on
                      negative ones (Zennit's generalized Gamma, biases t + g t+ / t + g t-)
    ZBox(low, high)   R_x = x A^T Q - l P^T Q - h M^T Q,         Q = R / stab(A x - P l - M h)
    Flat              R_x = F^T (R / stab(F 1)),                 F: every weight 1, no bias
    WSquare           R_x = S^T (R / stab(S 1 + t^2)),           S: weights (s w)^2

where A, P, M are the layer's map and its positive and negative parts. The transposes are
VJPs of those maps (with the compile policy's fast VJPs), so a rule costs a few passes of
the layer's own op, whatever the op.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from jaxviz.core import compile as compile_lib

_ZERO = "zero"  # marks a weight whose map is zero (the negative part of a weightless sum)


def stabilize(z: jax.Array, eps: float) -> jax.Array:
    """z + eps * sign(z), with sign(0) = +1: a safe denominator."""
    return z + jnp.where(z >= 0, eps, -eps).astype(z.dtype)


def pull(x: jax.Array, *terms) -> jax.Array:
    """sum_k f_k^T c_k for the linear maps f_k at x: terms (f_k, c_k); a term whose f_k or
    c_k is None is zero."""
    terms = [(f, c) for f, c in terms if f is not None and c is not None]
    if not terms:
        return jnp.zeros_like(x)
    fns = tuple(f for f, _ in terms)
    _, back = jax.vjp(compile_lib.fast_model(lambda u: tuple(f(u) for f in fns)), x)
    return back(tuple(c for _, c in terms))[0]


def _pos(a):
    return None if a is None else jnp.maximum(a, 0)


def _neg(a):
    return None if a is None else jnp.minimum(a, 0)


def _plus(*xs):
    xs = [v for v in xs if v is not None]
    if not xs:
        return None
    out = xs[0]
    for v in xs[1:]:
        out = out + v
    return out


@dataclasses.dataclass(frozen=True)
class Layer:
    """The math view of z = s * op(x, w) + t. apply(u, w) -> op(u, w) (w None: weightless)."""
    apply: Callable
    w: Any
    s: Any
    t: Any

    def op(self, w, s) -> Callable | None:
        """u -> s * op(u, w), or None for the zero map."""
        if isinstance(w, str):
            return None

        def f(u):
            y = self.apply(u, w)
            return y if s is None else s * y
        return f

    def A(self):
        return self.op(self.w, self.s)

    def part(self, sign: int) -> Callable | None:
        """The map with the positive (sign=1) or negative (-1) part of the effective weights
        s_j w_ij: (s w)+ = s+ w+ + s- w-,  (s w)- = s+ w- + s- w+."""
        if self.w is None:
            wp, wn = None, _ZERO
        else:
            wp, wn = _pos(self.w), _neg(self.w)
        if sign < 0:
            wp, wn = wn, wp
        if self.s is None:
            return self.op(wp, None)
        maps = [m for m in (self.op(wp, _pos(self.s)), self.op(wn, _neg(self.s))) if m]
        return None if not maps else (lambda u: _plus(*(m(u) for m in maps)))



@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule: relevance(layer, x, z, R, nonneg, bounds) -> R_x. nonneg: x >= 0 is known
    (after a ReLU), which drops the x- terms; bounds: (lo, hi) arrays like x, or None."""
    name: ClassVar[str] = ""

    def relevance(self, layer: Layer, x, z, R, nonneg: bool, bounds):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Epsilon(Rule):
    epsilon: float = 1e-6
    name: ClassVar[str] = "epsilon"

    def relevance(self, layer, x, z, R, nonneg, bounds):
        return x * pull(x, (layer.A(), R / stabilize(z, self.epsilon)))


def _signed(layer: Layer, x, z, nonneg: bool):
    """(P, xp, xn, zp): the positive part of the map, x+ and x- (None when x >= 0 is
    known from the program, after a ReLU), and zp = P x+ + M x- + t+, the layer's positive
    contributions. Every signed rule needs only zp beside the layer's own output z: the
    negative contributions are zn = M x+ + P x- + t- = z - zp (A = P + M), one forward
    pass of the layer's op for x >= 0, two for x of both signs."""
    P, M = layer.part(1), layer.part(-1)
    t = _pos(layer.t)
    if nonneg:
        return P, x, None, _plus(P(x), t)
    xp, xn = jnp.maximum(x, 0), jnp.minimum(x, 0)
    return P, xp, xn, _plus(P(xp), _apply(M, xn), t)


def _by_sign(x, nonneg: bool, rel):
    """rel(x, nonneg) for the rules that treat x+ and x- apart. When x >= 0 is not known
    from the program (after a ReLU), it is checked at run time: for inputs >= 0 (images
    into the first layer) the x- terms are skipped, and with them their passes and the
    memory they hold."""
    if nonneg:
        return rel(x, True)
    return lax.cond(jnp.all(x >= 0), lambda u: rel(u, True), lambda u: rel(u, False), x)


def _apply(f, u):
    return None if f is None or u is None else f(u)


def _without_bias(layer: Layer, z):
    """A x from the layer's output z = A x + t."""
    return z if layer.t is None else z - layer.t


@dataclasses.dataclass(frozen=True)
class ZPlus(Rule):
    stabilizer: float = 1e-6
    name: ClassVar[str] = "zplus"

    def relevance(self, layer, x, z, R, nonneg, bounds):
        return _by_sign(x, nonneg, lambda x, nonneg: self._rel(layer, x, z, R, nonneg))

    def _rel(self, layer, x, z, R, nonneg):
        P, xp, xn, zp = _signed(layer, x, z, nonneg)
        Q = R / stabilize(zp, self.stabilizer)
        # x+ P^T Q + x- M^T Q: with M itself (not A - P), so z+ maps keep their sign
        out = xp * pull(x, (P, Q))
        return out if xn is None else out + xn * pull(x, (layer.part(-1), Q))


@dataclasses.dataclass(frozen=True)
class AlphaBeta(Rule):
    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    name: ClassVar[str] = "alpha_beta"

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1) > 1e-9:
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0 with alpha - beta = 1; got "
                             f"alpha={self.alpha}, beta={self.beta}")

    def relevance(self, layer, x, z, R, nonneg, bounds):
        return _by_sign(x, nonneg, lambda x, nonneg: self._rel(layer, x, z, R, nonneg))

    def _rel(self, layer, x, z, R, nonneg):
        P, xp, xn, zp = _signed(layer, x, z, nonneg)
        M = layer.part(-1)
        qp = R * (self.alpha / stabilize(zp, self.stabilizer))
        qn = R * (-self.beta / stabilize(z - zp, self.stabilizer))
        out = xp * pull(x, (P, qp), (M, qn))
        return out if xn is None else out + xn * pull(x, (M, qp), (P, qn))


@dataclasses.dataclass(frozen=True)
class Gamma(Rule):
    """Weights w + gamma w+ for positive outputs, w + gamma w- for negative ones: the
    positive contributions zp (negative ones zn = z - zp) amplified by 1 + gamma, so the
    denominator is z + gamma zp where z > 0 and z + gamma zn where z < 0; it has z's sign,
    so with F = 1 / stab(denominator) (0 where z = 0) the relevance through P and M is
    R (F + gamma F+) and R (F + gamma F-), swapped for x-."""
    gamma: float = 0.25
    stabilizer: float = 1e-6
    name: ClassVar[str] = "gamma"

    def relevance(self, layer, x, z, R, nonneg, bounds):
        return _by_sign(x, nonneg, lambda x, nonneg: self._rel(layer, x, z, R, nonneg))

    def _rel(self, layer, x, z, R, nonneg):
        P, xp, xn, zp = _signed(layer, x, z, nonneg)
        M, g = layer.part(-1), self.gamma
        den = z + g * jnp.where(z > 0, zp, z - zp)
        F = jnp.where(z == 0, 0, 1 / stabilize(den, self.stabilizer))
        c1, c2 = R * (F + g * jnp.maximum(F, 0)), R * (F + g * jnp.minimum(F, 0))
        out = xp * pull(x, (P, c1), (M, c2))
        return out if xn is None else out + xn * pull(x, (P, c2), (M, c1))


@dataclasses.dataclass(frozen=True)
class ZBox(Rule):
    """low, high: the input's bounds (numbers); None: the model's input range, carried
    through elementwise affine ops to this layer."""
    low: float | None = None
    high: float | None = None
    stabilizer: float = 1e-6
    name: ClassVar[str] = "zbox"

    def relevance(self, layer, x, z, R, nonneg, bounds):
        lo, hi = bounds
        A, P, M = layer.A(), layer.part(1), layer.part(-1)
        zb = _plus(_without_bias(layer, z), _apply(P, -lo), _apply(M, -hi))
        Q = R / stabilize(zb, self.stabilizer)
        # x A^T Q - lo P^T Q - hi M^T Q with M = A - P: two transposes, not three
        return (x - hi) * pull(x, (A, Q)) + (hi - lo) * pull(x, (P, Q))


@dataclasses.dataclass(frozen=True)
class Flat(Rule):
    stabilizer: float = 1e-6
    name: ClassVar[str] = "flat"

    def relevance(self, layer, x, z, R, nonneg, bounds):
        f = layer.op(None if layer.w is None else jnp.ones_like(layer.w), None)
        one = jnp.ones_like(x)
        return pull(one, (f, R / stabilize(f(one), self.stabilizer)))


@dataclasses.dataclass(frozen=True)
class WSquare(Rule):
    stabilizer: float = 1e-6
    name: ClassVar[str] = "wsquare"

    def relevance(self, layer, x, z, R, nonneg, bounds):
        f = layer.op(None if layer.w is None else layer.w ** 2,
                     None if layer.s is None else layer.s ** 2)
        one = jnp.ones_like(x)
        denom = f(one) if layer.t is None else f(one) + layer.t ** 2
        return pull(one, (f, R / stabilize(denom, self.stabilizer)))


RULES = {r.name: r for r in (Epsilon, ZPlus, AlphaBeta, Gamma, ZBox, Flat, WSquare)}
