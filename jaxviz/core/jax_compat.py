"""What differs between the JAX releases jaxviz supports (jax/jaxlib 0.10 to 0.12), in one place.

Every other module asks this one instead of testing `jax.__version__` or an attribute:

    compat.CALL_KINDS             {call primitive name: "call" | "custom" | "remat"}
    compat.CLOSED_CALL            "closed_call" (jax 0.10) or "eval_jaxpr" (jax >= 0.11)
    compat.is_closed_jaxpr(obj)   what `jax.make_jaxpr` returns, on this release
    compat.closed_jaxpr(sub)      a call's body param as a closed jaxpr, or None
    compat.open_jaxpr(v)          the Jaxpr whose `.eqns` a walker reads, or None
    compat.bind_params(eqn)       the keyword arguments that re-bind eqn's primitive
    compat.YNN_OFF                XLA CPU options that turn YNNPACK fusions off
    compat.speed_policy()         which of jaxviz's XLA-CPU speed-ups pay off on this jaxlib

What changed (docs/versions.md has the runs):
- jax 0.11: `closed_call` is the primitive `eval_jaxpr` (`closed_call_p` and `call_p` are
  both it); `ClosedJaxpr` is an alias of `Jaxpr`, which carries its constants itself, so
  `jax.make_jaxpr` returns a `Jaxpr`, `.jaxpr` of it is itself, and there is no open/closed
  distinction to check. `ClosedJaxpr(jaxpr, consts)` still constructs, as a legacy form
  that re-attaches consts; jaxviz never calls it there.
- jax 0.10: `make_jaxpr` returns a `ClosedJaxpr` wrapping a `Jaxpr` (an open jaxpr: its
  constvars have no values), and a call's body param may be either.
- The XLA CPU option `xla_cpu_experimental_ynn_fusion_type` exists in jaxlib 0.10 to 0.12.

Facts are found by looking at the installed JAX (feature detection), not by version
number, so a release that changes them is caught by this module's tests. Only the speed
policy is keyed by version, because it is a measurement (`SPEED_POLICIES`).
"""
from __future__ import annotations

import dataclasses
import re

import jax
import jaxlib
from jax.extend import core as jcore


def _version(text: str) -> tuple:
    """'0.12.0.1' -> (0, 12, 0, 1); what follows the release numbers ('rc1', '.dev2026',
    '+cuda') is dropped."""
    release = re.match(r"\d+(?:\.\d+)*", text.strip())
    if release is None:
        raise ValueError(f"text: expected a version such as '0.12.1'; got {text!r}")
    return tuple(int(p) for p in release.group(0).split("."))


JAX_VERSION = _version(jax.__version__)
JAXLIB_VERSION = _version(getattr(jaxlib, "__version__", jax.__version__))

# ---- jaxprs ------------------------------------------------------------------------------

# jax >= 0.11: one Jaxpr type that carries its constants (ClosedJaxpr is an alias).
UNIFIED_JAXPR = jcore.ClosedJaxpr is jcore.Jaxpr


def is_closed_jaxpr(obj) -> bool:
    """Whether obj is what `jax.make_jaxpr` returns (a jaxpr whose constants have values)."""
    return isinstance(obj, jcore.ClosedJaxpr)


def closed_jaxpr(sub):
    """A call equation's body param as a closed jaxpr: itself if closed, an open Jaxpr (jax
    0.10 only) with no constants, None for anything else."""
    if isinstance(sub, jcore.ClosedJaxpr):
        return sub
    if isinstance(sub, jcore.Jaxpr):  # unreachable when UNIFIED_JAXPR: caught above
        return jcore.ClosedJaxpr(sub, ())
    return None


def open_jaxpr(v):
    """The Jaxpr inside v (a ClosedJaxpr or a Jaxpr), whose `.eqns` a walker reads; None
    for anything else. On jax >= 0.11 a Jaxpr is its own `.jaxpr`."""
    if isinstance(v, jcore.ClosedJaxpr):
        return v.jaxpr
    return v if isinstance(v, jcore.Jaxpr) else None


# ---- call primitives ---------------------------------------------------------------------

CALL, CUSTOM, REMAT = "call", "custom", "remat"
_P = jcore.primitives


def _name(attr: str, fallback: str) -> str:
    prim = getattr(_P, attr, None)
    return getattr(prim, "name", fallback)


CLOSED_CALL = _name("closed_call_p", "closed_call")


def _call_kinds() -> dict:
    """{name: kind} for this release's call primitives. The names of older releases stay
    (`pjit`, `closed_call`, `core_call`, ...): a name no primitive has never matches."""
    kinds = {name: CALL for name in ("jit", "pjit", "closed_call", "eval_jaxpr", "call",
                                     "core_call")}
    kinds.update({name: CUSTOM for name in ("custom_jvp_call", "custom_vjp_call",
                                            "custom_vjp_call_jaxpr")})
    kinds.update({name: REMAT for name in ("remat2", "checkpoint", "remat")})
    for attr in ("jit_p", "closed_call_p", "call_p"):
        kinds[_name(attr, "jit")] = CALL
    kinds[_name("remat_p", "remat2")] = REMAT
    for attr in ("custom_jvp_call_p", "custom_vjp_call_p"):
        kinds[_name(attr, "custom_jvp_call")] = CUSTOM
    return kinds


CALL_KINDS = _call_kinds()
# The params under which a call primitive keeps its body, in the order they are looked at.
BODY_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def bind_params(eqn) -> dict:
    """The keyword arguments that re-bind eqn's primitive (`get_bind_params` turns a call's
    jaxpr param back into what `bind` takes)."""
    get = getattr(eqn.primitive, "get_bind_params", None)
    return dict(eqn.params) if get is None else get(eqn.params)


# ---- XLA CPU -----------------------------------------------------------------------------

# YNNPACK fusions off (jaxlib 0.10 to 0.12 know the option; `xla_cpu.options()` asks).
YNN_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}


@dataclasses.dataclass(frozen=True)
class SpeedPolicy:
    """Which of jaxviz's XLA-CPU speed-ups pay off on a jaxlib (measured by
    `python -m experiments.bench --only fastgrad`; rows in docs/versions.md).

    ynn_off_backward: compile kind="backward" programs with YNNPACK fusions off.
    fastgrad_pool: the max-pool VJP rewrite.
    fastgrad_conv: the convolution VJP rewrite (materialized input-gradient kernel).
    pad_convs: fastgrad's extra zero row for unpadded wide convs, in programs that keep
        YNNPACK fusions (never needed with them off).
    """
    ynn_off_backward: bool = True
    fastgrad_pool: bool = True
    fastgrad_conv: bool = True
    pad_convs: bool = True


# (first jaxlib (major, minor) it applies to, policy), newest last.
SPEED_POLICIES = (
    ((0, 10), SpeedPolicy()),
)


def speed_policy(version: tuple | None = None) -> SpeedPolicy:
    """The policy for jaxlib `version` (default: the installed one): the newest entry of
    `SPEED_POLICIES` at or below it; releases older than every entry get the first."""
    version = JAXLIB_VERSION if version is None else tuple(version)
    chosen = SPEED_POLICIES[0][1]
    for first, policy in SPEED_POLICIES:
        if version[:len(first)] >= first:
            chosen = policy
    return chosen
