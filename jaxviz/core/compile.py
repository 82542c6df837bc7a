"""The one place jaxviz's speed policy lives: how an analysis is compiled.

    core = compile.jit(_core, static_argnames=("fn", "layer"), kind="backward")
    fast = compile.fast_model(fn)   # inside a traced core: fn with XLA-CPU-friendly VJPs

Methods never choose between `jax.jit`, XLA options and fastgrad themselves: they say what
kind of program they are and this module decides.

- kind="backward": programs whose convolutions are materialized (every gradient, the train
  step, activation maximization, incremental occlusion). On XLA CPU they compile with
  YNNPACK fusions off (`xla_cpu.options()`), and `fast_model` rewrites the model's VJPs
  (`fastgrad`) without the conv padding that only pays under YNNPACK.
- kind="forward": pure forward programs (exact occlusion, Score-CAM, evaluation): plain
  `jax.jit`, where XLA fuses each conv with the reduction after it.

Which of these speed-ups pay off depends on the jaxlib (XLA's CPU backend changes between
releases): `jax_compat.speed_policy()` says, per version, from the benchmark's rows
(docs/versions.md); the configuration below can only turn them off.

Configuration is read once, when jaxviz is imported, into `config()` (a frozen `Config`):

    JAXVIZ_FASTGRAD=auto|1|0        fastgrad in `fast_model`; auto (default): CPU backend
                                    only (GPU backward passes are already fast there)
    JAXVIZ_XLA_OPTIONS=1|0          XLA CPU options for kind="backward" (default 1)
    JAXVIZ_GPU_DETERMINISTIC=1|0    add --xla_gpu_deterministic_ops=true to XLA_FLAGS
                                    (default 1; 0 leaves XLA_FLAGS alone)

("0", "false", "off" and "no" all mean off.) Changing the environment later does nothing;
`configure(fastgrad=..., xla_options=...)` changes the policy at run time and drops every
compiled program (jax.clear_caches()), so no cached compile keeps the old setting.

GPU determinism: XLA's GPU backend otherwise picks atomics-based reductions and scatters
(e.g. a max-pool's backward) whose results vary from run to run, so the same seed on the
same machine would not give the same numbers. The flag only takes effect before JAX starts
its backends, which is why `import jaxviz` imports this module first; it does nothing on CPU.

One name across every analysis: `chunk_size` is how many forward passes (rows: images,
occluded copies, interpolation steps, noisy samples, units) are evaluated at once. It
bounds memory, never changes results, and defaults to all of them (or one image's worth).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import weakref
from collections.abc import Mapping

import jax

from jaxviz.core import fastgrad, xla_cpu
from jaxviz.core import jax_compat as compat

KINDS = ("backward", "forward")
FASTGRAD_MODES = ("auto", "on", "off")
ENV_FASTGRAD = "JAXVIZ_FASTGRAD"
ENV_XLA_OPTIONS = "JAXVIZ_XLA_OPTIONS"
ENV_GPU_DETERMINISTIC = "JAXVIZ_GPU_DETERMINISTIC"
GPU_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
_OFF = ("0", "false", "off", "no")


@dataclasses.dataclass(frozen=True)
class Config:
    """jaxviz's compile policy.

    fastgrad: "auto" (on for the CPU backend only), "on" or "off": whether `fast_model`
        rewrites a model's VJPs.
    xla_options: compile kind="backward" programs with `xla_cpu.options()` (YNNPACK fusions
        off on XLA CPU, where this jaxlib has the flag).
    gpu_deterministic: whether import asked XLA for deterministic GPU ops (read-only: it
        only matters before the backends start).
    """
    fastgrad: str = "auto"
    xla_options: bool = True
    gpu_deterministic: bool = True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Config":
        """The policy the environment variables above describe (unset: the defaults)."""
        return cls(fastgrad=_fastgrad_mode(environ.get(ENV_FASTGRAD, "auto"), ENV_FASTGRAD),
                   xla_options=_on(environ.get(ENV_XLA_OPTIONS, "1")),
                   gpu_deterministic=_on(environ.get(ENV_GPU_DETERMINISTIC, "1")))


def _on(value: str) -> bool:
    return str(value).strip().lower() not in _OFF


def _fastgrad_mode(value, name: str) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if not isinstance(value, str):
        raise ValueError(f"{name} must be 'auto', 'on', 'off' or a bool; got {value!r}")
    v = value.strip().lower()
    if v in ("", "auto"):
        return "auto"
    return "off" if v in _OFF else "on"


def _ask_for_deterministic_gpu_ops(cfg: Config) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if cfg.gpu_deterministic and "xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {GPU_DETERMINISTIC_FLAG}".strip()


_CONFIG = Config.from_environ(os.environ)
_ask_for_deterministic_gpu_ops(_CONFIG)
_LIVE: "weakref.WeakSet[_PolicyJit]" = weakref.WeakSet()


def config() -> Config:
    """The policy in force."""
    return _CONFIG


def configure(new: Config | None = None, *, fastgrad: str | bool | None = None,
              xla_options: bool | None = None) -> Config:
    """Change the policy for this process; returns the previous Config (pass it back to
    restore it). A change drops every compiled program (jax.clear_caches()), so the next
    call of any analysis compiles under the new policy.

    fastgrad: "auto", "on", "off" (or True/False); xla_options: bool.
    """
    global _CONFIG
    old = _CONFIG
    base = old if new is None else new
    if not isinstance(base, Config):
        raise TypeError(f"new: expected a compile.Config; got {type(base).__name__}")
    if base.gpu_deterministic != old.gpu_deterministic:
        raise ValueError(f"gpu_deterministic is applied once at import, before JAX starts its "
                         f"backends; set {ENV_GPU_DETERMINISTIC} before importing jaxviz")
    changes = {}
    if fastgrad is not None:
        changes["fastgrad"] = _fastgrad_mode(fastgrad, "fastgrad")
    if xla_options is not None:
        if not isinstance(xla_options, bool):
            raise ValueError(f"xla_options must be True or False; got {xla_options!r}")
        changes["xla_options"] = xla_options
    cfg = dataclasses.replace(base, **changes)
    if cfg.fastgrad not in FASTGRAD_MODES:
        raise ValueError(f"fastgrad must be one of {FASTGRAD_MODES}; got {cfg.fastgrad!r}")
    if cfg != old:
        _CONFIG = cfg
        for jitted in list(_LIVE):
            jitted._jitted.clear()
        jax.clear_caches()
    return old


def fastgrad_on() -> bool:
    """Whether `fast_model` rewrites VJPs under the policy in force, on this backend."""
    mode = _CONFIG.fastgrad
    return jax.default_backend() == "cpu" if mode == "auto" else mode == "on"


def compiler_options(kind: str = "backward") -> dict:
    """The XLA compiler options a program of `kind` compiles with ({} for plain jax.jit)."""
    _check_kind(kind)
    if (kind == "forward" or not _CONFIG.xla_options
            or not compat.speed_policy().ynn_off_backward):
        return {}
    return xla_cpu.options()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")


def jit(fun=None, *, kind: str = "backward", **jit_kwargs):
    """`jax.jit(fun, **jit_kwargs)` under jaxviz's compile policy for programs of `kind`.

    Usable as `@jit` or `@partial(jit, static_argnames=...)`; `.lower`, `.trace` and the
    rest are the chosen jitted function's. The options are chosen at call time (the backend
    is only known then). Inside an outer jit or vmap the outer program's options apply, as
    for any nested jit.
    """
    _check_kind(kind)
    if fun is None:
        return functools.partial(jit, kind=kind, **jit_kwargs)
    return _PolicyJit(fun, kind, jit_kwargs)


class _PolicyJit:
    def __init__(self, fun, kind: str, jit_kwargs: dict):
        self._fun, self._kind, self._kwargs, self._jitted = fun, kind, jit_kwargs, {}
        functools.update_wrapper(self, fun)
        _LIVE.add(self)

    def _current(self, traced: bool = False):
        key = () if traced else tuple(compiler_options(self._kind).items())
        if key not in self._jitted:
            self._jitted[key] = jax.jit(self._fun, compiler_options=dict(key) or None,
                                        **self._kwargs)
        return self._jitted[key]

    def __call__(self, *args, **kwargs):
        # Options belong to the outermost jit only; under a trace use the plain form.
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
        return self._current(traced)(*args, **kwargs)

    def __getattr__(self, name):
        if name in ("_fun", "_kind", "_kwargs", "_jitted"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._current(), name)


def fast_model(fn, *, kind: str = "backward"):
    """fn with the same values and gradients, through fastgrad's rewritten VJPs where the
    policy turns them on (`fastgrad_on()`).

    kind: the kind of `compile.jit` program fn is traced in, which decides whether unpadded
    convolutions get fastgrad's padding (not under YNNPACK-off options). Inside a plain
    `jax.jit`, pass kind="forward".
    """
    _check_kind(kind)
    policy = compat.speed_policy()
    return fastgrad.fast(fn, enabled=fastgrad_on(), pool=policy.fastgrad_pool,
                         conv=policy.fastgrad_conv,
                         pad_convs=policy.pad_convs and not compiler_options(kind))
