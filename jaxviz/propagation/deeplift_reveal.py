"""DeepLIFT's reveal-cancel rule (Shrikumar et al. 2017, section 3.5.3) on the traced program.

A nonlinearity y = f(z) fed by a linear layer z = s * op(u, w) + t (a conv or dense layer
with constant weights, then affine ops by constants: its bias, a BatchNorm) sees the
change of its input split by sign of the contributions s_j w_ij (u_i - u0_i):

    dz+ = P du+ + M du-,   dz- = M du+ + P du- = dz - dz+      (P, M: positive and
                                                                 negative parts of s w)
    dy+ = [f(z0 + dz+) - f(z0)] / 2 + [f(z0 + dz- + dz+) - f(z0 + dz-)] / 2
    dy- = [f(z0 + dz-) - f(z0)] / 2 + [f(z0 + dz+ + dz-) - f(z0 + dz+)] / 2

(dy+ + dy- = f(z) - f(z0)), with the multipliers m+ = dy+ / dz+ and m- = dy- / dz- (the
gradient of f where |dz+-| < eps). The backward pass takes the output multiplier g to
u's multiplier in one step, through the layer's positive and negative parts, as the
reference implementation (kundajelab/deeplift) does:

    m_u = P^T (g m+) + M^T (g m-)   where u rose (du > 0)
          M^T (g m+) + P^T (g m-)   where u fell (du < 0)
          the mean of the two        where du = 0

so sum_i m_u_i du_i = sum_j g_j (dy+_j + dy-_j) = sum_j g_j dy_j: summation-to-delta holds.
A nonlinearity whose input is not such a layer's output (after a residual sum, a pooling,
or the model input) takes the rescale rule, to which reveal-cancel reduces when the
contributions all have one sign.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxviz.propagation import program
from jaxviz.propagation.lrp_rules import Layer, pull

RULES = ("rescale", "reveal_cancel")
_WEIGHTED = ("conv_general_dilated", "dot_general")


@dataclasses.dataclass(frozen=True)
class Feed:
    """The linear layer z = s * op(u, w) + t a value came from: eqn its op, index u's
    operand; u, u0: its input at the input and at the reference; s: the scale folded in
    (None: 1). t is not needed: constants shift z and z0 alike."""
    eqn: Any
    index: int
    u: jax.Array
    u0: jax.Array
    w: Any
    s: Any = None

    def layer(self, w, s) -> Layer:
        def apply(v, w):
            args = [w, w]
            args[self.index] = v
            return program.bind(self.eqn, args)[0]
        return Layer(apply, w, s, None)


def feed_of(eqn, invals, live, pairs) -> Feed | None:
    """The Feed of eqn's output, when eqn is a conv/dense with one input-dependent operand
    or an affine op by a constant after one; pairs: the (a, a0, feed) of each live operand.
    None otherwise (the nonlinearity after it then takes the rescale rule)."""
    name = eqn.primitive.name
    if sum(live) != 1:
        return None
    i = live.index(True)
    a, a0, feed = pairs[i]
    if name in _WEIGHTED:
        return Feed(eqn, i, a, a0, invals[1 - i])
    if feed is None or eqn.outvars[0].aval.shape != eqn.invars[i].aval.shape:
        return None
    s = 1.0 if feed.s is None else feed.s
    c = invals[1 - i] if len(invals) == 2 else None
    if name == "add" or (name == "sub" and i == 0):
        return feed
    if name == "neg" or name == "sub":
        return dataclasses.replace(feed, s=-s)
    if name == "mul":
        return dataclasses.replace(feed, s=s * c)
    if name == "div" and i == 0:
        return dataclasses.replace(feed, s=s / c)
    return None


def multipliers(f, za, za0, y0, feed: Feed, eps: float):
    """(m+, m-): reveal-cancel's multipliers of dz+ and dz- for y = f(z), in the forward
    pass. za: z at the input; za0, y0: z and f(z) at the reference (may be a batch of 1)."""
    layer = feed.layer(feed.w, feed.s)
    du = feed.u - feed.u0
    dzp = positive_change(layer, du)
    z0 = jnp.broadcast_to(za0, za.shape)
    dzn = (za - z0) - dzp
    ya = f(za)
    yp = (f(z0 + dzp) - y0 + ya - f(z0 + dzn)) / 2
    yn = (f(z0 + dzn) - y0 + ya - f(z0 + dzp)) / 2
    slope = jax.jvp(f, (za,), (jnp.ones_like(za),))[1]

    def ratio(dy, dz):
        small = jnp.abs(dz) < eps
        return jnp.where(small, slope, dy / jnp.where(small, 1, dz))
    return ratio(yp, dzp), ratio(yn, dzn)


def positive_change(layer: Layer, du):
    """dz+ = P du+ + M du-: the positive contributions to the layer's change."""
    P, M = layer.part(1), layer.part(-1)
    out = P(jnp.maximum(du, 0))
    return out if M is None else out + M(jnp.minimum(du, 0))


def unit(y, feed: Feed, mp, mn):
    """y (the nonlinearity's output, no gradient of its own) whose VJP takes the output
    multiplier straight to the feeding layer's input u (module docstring)."""
    consts = dict(w=feed.w, mp=mp, mn=mn, du=feed.u - feed.u0,
                  **({} if feed.s is None else dict(s=jnp.asarray(feed.s))))

    @jax.custom_vjp
    def step(u, y, c):
        return y

    def bwd(res, g):
        u, c = res
        layer = feed.layer(c["w"], c.get("s"))
        P, M = layer.part(1), layer.part(-1)
        gp, gn = g * c["mp"], g * c["mn"]
        rose = pull(u, (P, gp), (M, gn))
        both = pull(u, (layer.A(), gp + gn))  # rose + fell, as A = P + M: 3 passes, not 4
        du = c["du"]
        m = jnp.where(du > 0, rose, jnp.where(du < 0, both - rose, both / 2))
        return m.astype(u.dtype), jnp.zeros_like(g), jax.tree.map(jnp.zeros_like, c)

    step.defvjp(lambda u, y, c: (y, (u, c)), bwd)
    return step(feed.u, jax.lax.stop_gradient(y), consts)
