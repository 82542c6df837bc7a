"""Attribution methods re-run inside a metric (robustness, random logit, randomisation).

    run, arrays = rerun.resolve("saliency", {"abs": True})  # a registered name, or
    run, arrays = rerun.resolve(my_method, {})    # my_method(fn, params, x, t, **o) -> map
    maps = rerun.maps(run, fn, params, xs, ts, keys, arrays, display=True,
                      chunk_size=...)                    # inside a traced core

`resolve` checks everything in Python and returns a hashable `Rerun`, passed to the metric's
compiled core as a static argument; its array options travel as traced arguments. Inside the
core every perturbed image is one row of a vmap (`chunk_size` at a time), so the method and
the metric compile into one program. A registered method's map is its display map (one
value per pixel, `attribution.display_map`) with display=True (what `evaluate` hands every
metric), otherwise its raw map; a callable's map is summed over channels with display=True.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import jax
import numpy as np

from jaxviz import attribution as attr_lib
from jaxviz.core import analysis
from jaxviz.evaluate import common


@dataclasses.dataclass(frozen=True)
class Rerun:
    """A method to re-run: name (registered) or fn (a callable), options as sorted pairs,
    keyed (takes key=)."""
    name: str | None
    fn: Callable | None
    options: tuple
    keyed: bool

    def __call__(self, model, params, x, t, key, arrays, display: bool):
        """(n, H, W, Ca): the map of images x (n, H, W, C) for targets t (n,)."""
        opts = {**dict(self.options), **arrays}
        if self.name is not None:
            method = attr_lib.get(self.name)
            res = method(model, params, x, t, key=key if self.keyed else None, **opts)
            out = attr_lib.display_map(method, res) if display else res.map
        else:
            res = self.fn(model, params, x, t, **({"key": key} if self.keyed else {}), **opts)
            out = res.map if hasattr(res, "map") else res
        out = common.as_map(out)
        if display and out.shape[-1] > 1:
            out = out.sum(-1, keepdims=True)
        return out


def resolve(method, options=None) -> tuple[Rerun, dict]:
    """(Rerun, array options) for a registered method name or a callable
    method(fn, params, images, target, **options) -> map or Attribution (given key= when
    its signature takes one)."""
    options = dict(options or {})
    arrays = {k: v for k, v in options.items() if isinstance(v, (jax.Array, np.ndarray))}
    static = {k: v for k, v in options.items() if k not in arrays}
    try:
        hash(tuple(sorted(static.items())))
    except TypeError:
        raise ValueError(f"method_options must be arrays or hashable values (numbers, "
                         f"strings, tuples); got {static!r}") from None
    if isinstance(method, str):
        m = attr_lib.get(method)  # unknown names: the registry's clear error
        merged = {**m.defaults, **static}
        return Rerun(method, None, tuple(sorted(merged.items())), m.needs_key), arrays
    if not callable(method):
        raise ValueError(f"method must be a registered method name {list(attr_lib.METHODS)} "
                         f"or a callable fn(model, params, images, target, **options); got "
                         f"{method!r}")
    try:
        keyed = "key" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        keyed = False
    return Rerun(None, method, tuple(sorted(static.items())), keyed), arrays


def maps(run: Rerun, fn, params, xs, ts, keys, arrays, *, display: bool, chunk_size):
    """The method's map for every row (traced). xs: (R, H, W, C), ts: (R,), keys: (R,) or
    None -> (R, H, W, Ca), `chunk_size` rows at a time (None: all)."""
    def one(row):
        xi, ti, ki = row
        return run(fn, params, xi[None], ti[None], ki, arrays, display)[0]

    if keys is None:
        keys = jax.random.split(jax.random.key(0), xs.shape[0])  # unused by unkeyed methods
    return analysis.chunked(one, (xs, ts, keys), chunk_size)


def method_keys(keys, s: int, salt: int):
    """(N,) image keys -> (N, s) keys for a keyed method's own draws."""
    return common.row_keys(keys, s, salt)
