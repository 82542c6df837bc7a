"""XLA CPU compile options for programs made of many small, materialized convolutions.

XLA CPU (jaxlib 0.10) hands convolutions to YNNPACK fusions. Those are at peak when a conv
feeds a fused reduction (a plain forward pass), but an unpadded conv whose output is
materialized runs 2.5-5x slower than XLA's Eigen path: e.g. 625 crops 10x10x32 -> 8x8x64
take 42 ms with YNNPACK and 8.2 ms without (docs/xla_cpu_backward.md). Incremental
occlusion is exactly such a program, so it compiles with YNNPACK fusions off.

The flag is experimental and specific to some jaxlib versions, and XLA rejects unknown
options at compile time, so `small_conv_options()` asks this jaxlib once and returns {}
where the flag is unknown, the backend is not the CPU, or JAXVIZ_XLA_OPTIONS=0.
"""
from __future__ import annotations

import functools
import os

import jax

ENV_VAR = "JAXVIZ_XLA_OPTIONS"
YNN_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def _accepted(items: tuple) -> bool:
    try:
        jax.jit(lambda v: v + 1, compiler_options=dict(items)).lower(1.0).compile()
        return True
    except Exception:  # noqa: BLE001 -- "No such compile option" and kin: do without
        return False


def small_conv_options() -> dict:
    """Compiler options for `jax.jit(..., compiler_options=...)`; {} where they don't apply."""
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "off", "no"):
        return {}
    if jax.default_backend() != "cpu" or not _accepted(tuple(YNN_OFF.items())):
        return {}
    return dict(YNN_OFF)
