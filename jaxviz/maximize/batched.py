"""A batch of images per unit: what diversity, interpolation and alignment objectives need.

    param = Batch(DecorrelatedFourier((H, W, C)), n=4)
    p = param.init(key)      # the inner parametrization's p, leading axis n
    images = param(p)        # (n, H, W, C)

A unit then optimises n images together; the model sees them as one batch (N = n) and the
objective's (n,) values are averaged, so an objective may couple the images (diversity) or
weight them by position (channel interpolation). shared=True adds one parameter set common
to the batch, image i = inner(shared + own_i) (Lucid's interpolation notebooks share part of
the parametrization so neighbouring frames stay alike).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Batch:
    param: object
    n: int
    shared: bool = False

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"batch must be an int >= 1; got {self.n!r}")

    def init(self, key):
        keys = jax.random.split(key, self.n + 1)
        own = jax.vmap(self.param.init)(keys[1:])
        return {"shared": self.param.init(keys[0]), "own": own} if self.shared else own

    def __call__(self, p):
        if not self.shared:
            return jax.vmap(self.param)(p)
        add = lambda own: jax.tree.map(jnp.add, p["shared"], own)  # noqa: E731
        return jax.vmap(lambda own: self.param(add(own)))(p["own"])
