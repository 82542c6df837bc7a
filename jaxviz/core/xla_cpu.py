"""XLA CPU compile options for programs whose convolutions are materialized: backward passes
and incremental occlusion.

XLA CPU (jaxlib 0.10 to 0.12) hands convolutions to YNNPACK fusions. Those are at their best when a
conv feeds a fused reduction (a plain forward pass), but a conv whose output is materialized,
and a weight gradient, run several times slower than on XLA's Eigen path (measurements:
docs/xla_cpu_backward.md). `jaxviz.core.compile` compiles programs made of such convs
(kind="backward") with YNNPACK fusions off; pure forward programs keep the default.

The flag is experimental and specific to some jaxlib versions, and XLA rejects unknown
options at compile time, so `options()` asks this jaxlib once and returns {} where the flag
is unknown or the backend is not the CPU. This module states what is possible; whether to
use it is the policy's call (`jaxviz.core.compile`, JAXVIZ_XLA_OPTIONS).
"""
from __future__ import annotations

import functools

import jax

from jaxviz.core import jax_compat as compat

YNN_OFF = compat.YNN_OFF


@functools.cache
def _accepted(items: tuple) -> bool:
    try:
        jax.jit(lambda v: v + 1, compiler_options=dict(items)).lower(1.0).compile()
        return True
    except Exception:  # noqa: BLE001 -- "No such compile option" and kin: do without
        return False


def options() -> dict:
    """YNNPACK-off compiler options for `jax.jit(..., compiler_options=...)` where this
    backend and jaxlib take them; {} elsewhere."""
    if jax.default_backend() != "cpu" or not _accepted(tuple(YNN_OFF.items())):
        return {}
    return dict(YNN_OFF)
