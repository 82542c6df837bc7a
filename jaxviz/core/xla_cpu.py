"""XLA CPU compile options for programs whose convolutions are materialized: backward passes
and incremental occlusion.

XLA CPU (jaxlib 0.10) hands convolutions to YNNPACK fusions. Those are at peak when a conv
feeds a fused reduction (a plain forward pass), but a conv whose output is materialized, and
a weight gradient, run 2.5-5x slower than on XLA's Eigen path (batch 128, seed CNN conv2:
forward 77 vs 15 ms, weight gradient 84 vs 23 ms; 625 crops 10x10x32 -> 8x8x64: 42 vs 8.2 ms;
docs/xla_cpu_backward.md). Programs made of such convs (every gradient-based analysis, the
train step, incremental occlusion) are compiled with YNNPACK fusions off; pure forward
programs (exact occlusion, Score-CAM, evaluation) keep the default.

The flag is experimental and specific to some jaxlib versions, and XLA rejects unknown
options at compile time, so `options()` asks this jaxlib once and returns {} where the flag
is unknown, the backend is not the CPU, or JAXVIZ_XLA_OPTIONS=0.
"""
from __future__ import annotations

import contextvars
import functools
import os

import jax

ENV_VAR = "JAXVIZ_XLA_OPTIONS"
YNN_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}
_TRACING_WITH_OPTIONS = contextvars.ContextVar("jaxviz_xla_options", default=False)


def ynn_off_while_tracing() -> bool:
    """True while a `jit` of this module traces a program that compiles with YNNPACK off
    (so workarounds for YNNPACK's slow paths, like fastgrad's conv padding, can be skipped)."""
    return _TRACING_WITH_OPTIONS.get()


@functools.cache
def _accepted(items: tuple) -> bool:
    try:
        jax.jit(lambda v: v + 1, compiler_options=dict(items)).lower(1.0).compile()
        return True
    except Exception:  # noqa: BLE001 -- "No such compile option" and kin: do without
        return False


def options() -> dict:
    """Compiler options for `jax.jit(..., compiler_options=...)`; {} where they don't apply."""
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "off", "no"):
        return {}
    if jax.default_backend() != "cpu" or not _accepted(tuple(YNN_OFF.items())):
        return {}
    return dict(YNN_OFF)


def jit(fun=None, **jit_kwargs):
    """`jax.jit(fun, **jit_kwargs)` compiled with `options()`, chosen at call time (the
    backend is only known then). Usable as `@jit` or `@partial(jit, static_argnames=...)`;
    `.lower`, `.trace` and the rest are the chosen jitted function's. Inside an outer
    `jax.jit` the outer program's options apply, as for any nested jit."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)
    return _OptionsJit(fun, jit_kwargs)


class _OptionsJit:
    def __init__(self, fun, jit_kwargs):
        self._fun, self._kwargs, self._compiled = fun, jit_kwargs, {}
        functools.update_wrapper(self, fun)

    def _current(self, key: tuple):
        if key not in self._compiled:
            self._compiled[key] = jax.jit(self._fun, compiler_options=dict(key) or None,
                                          **self._kwargs)
        return self._compiled[key]

    def __call__(self, *args, **kwargs):
        # Options belong to the outermost jit only; under a trace use the plain form.
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
        key = () if traced else tuple(options().items())
        token = _TRACING_WITH_OPTIONS.set(dict(key) == YNN_OFF)
        try:
            return self._current(key)(*args, **kwargs)
        finally:
            _TRACING_WITH_OPTIONS.reset(token)

    def __getattr__(self, name):
        if name in ("_fun", "_kwargs", "_compiled"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._current(tuple(options().items())), name)
