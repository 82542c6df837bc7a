"""The one place jaxviz's speed policy lives: how an analysis is compiled.

    core = compile.jit(_core, static_argnames=("fn", "layer"), kind="backward")
    fast = compile.fast_model(fn)   # inside a traced core: fn with XLA-CPU-friendly VJPs

kind="backward" is for programs whose convolutions are materialized (every gradient,
the train step, incremental occlusion); kind="forward" for pure forward programs.
Methods never choose between `jax.jit` and jaxviz's CPU rules themselves.
"""
from __future__ import annotations

import functools

import jax

from jaxviz.core import fastgrad, xla_cpu

KINDS = ("backward", "forward")


def jit(fun=None, *, kind: str = "backward", **jit_kwargs):
    """`jax.jit(fun, **jit_kwargs)` under jaxviz's compile policy for programs of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if fun is None:
        return functools.partial(jit, kind=kind, **jit_kwargs)
    if kind == "forward":
        return jax.jit(fun, **jit_kwargs)
    return xla_cpu.jit(fun, **jit_kwargs)


def fast_model(fn):
    """fn with the same values and gradients, through fastgrad's rewritten VJPs where the
    policy turns them on (the CPU backend by default)."""
    return fastgrad.fast(fn)
