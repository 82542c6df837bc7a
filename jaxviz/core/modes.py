"""Which keyword arguments put a model in training or inference mode.

Flax models spell "training mode" four common ways: a `__call__` argument `train` or
`training` (True while training), `deterministic` or `use_running_average` (False while
training). A caller that sets the mode (the train step, a Probe) passes every one the
model's `__call__` accepts, so a user never has to remember which one their model uses:

    mode_kwargs(type(model).__call__, training=False)   # {"train": False} for most ResNets

NNX modules also carry the mode as attributes (`model.train()` / `model.eval()`); both are
set, since a model may read either.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from flax import linen as nn
from flax import nnx

# Each flag's value in training mode; inference mode is the opposite.
FLAGS: Mapping[str, bool] = {"train": True, "training": True, "deterministic": False,
                             "use_running_average": False}
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def mode_kwargs(fn: Callable | None, training: bool, given: Mapping | None = None,
                flags: Mapping[str, bool] = FLAGS) -> dict:
    """{flag: value} for the mode flags `fn` takes by name, set for `training`; flags named
    in `given` (the caller's explicit keyword arguments) are left out, so an explicit
    value wins. flags: {name: its value in training mode} (default the Flax spellings)."""
    given = given or {}
    return {name: value if training else not value for name, value in flags.items()
            if name not in given and name in _keyword_params(fn)}


def _keyword_params(fn) -> set[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins, some C callables: no flags to set
        return set()
    return {p.name for p in params if p.kind in _BY_NAME}


def call_target(model, method=None) -> Callable | None:
    """The function whose signature decides a model's mode flags: a Linen module's method
    (default `__call__`), an NNX module's `__call__`, or for an `nnx.bridge.ToNNX` wrapper
    the wrapped Linen module's."""
    if isinstance(model, nnx.bridge.ToNNX):
        return call_target(model.to_nnx__module, method)
    if method is None:
        return getattr(type(model), "__call__", None)
    if isinstance(method, str):
        return getattr(type(model), method, None)
    return method


def is_linen_bridge(model) -> bool:
    """True for a Linen module wrapped as NNX (`nnx.bridge.ToNNX`)."""
    return isinstance(model, nnx.bridge.ToNNX) and isinstance(model.to_nnx__module, nn.Module)


def inference_kwargs(target: Callable | None, apply_kwargs: Mapping | None,
                     flags: Mapping[str, bool] = FLAGS) -> dict:
    """`apply_kwargs` plus every mode flag `target` takes, in its inference value (an
    explicit value in apply_kwargs wins). `mutable` is refused: nothing changes in
    inference mode."""
    given = dict(apply_kwargs or {})
    if "mutable" in given:
        raise ValueError(f"apply_kwargs: jaxviz runs models in inference mode, where no "
                         f"variable changes; drop 'mutable' (got {given['mutable']!r})")
    return {**mode_kwargs(target, False, given, flags), **given}


def refuse_mutation(what: str, kwargs) -> ValueError:
    """The error for a model that changes `what` (a variable) when called in inference mode."""
    return ValueError(
        f"the model changes {what} when called in inference mode (with {kwargs}), so its "
        f"outputs would depend on the batch; give its __call__ a `train`, `training`, "
        f"`deterministic` or `use_running_average` argument that turns this off, or pass "
        f"apply_kwargs that do")
