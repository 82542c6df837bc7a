"""Any function of (params, x): `jaxviz.core.probe.from_function`.

Three forms, told apart by the function's signature and output (see `from_function`):
apply_fn(params, x) -> logits; -> (logits, {layer: activation}); or apply_fn(params, x,
tap) -> logits with `tap(name, a)` marking (and letting edits replace) each layer's output.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping

import jax

from jaxviz.core import probe as probe_lib


def _takes_tap(fn) -> bool:
    try:
        return "tap" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def build(apply_fn, params, options, name=None) -> probe_lib.Probe:
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be a function (params, x) -> logits; got "
                        f"{type(apply_fn).__name__}")
    tapped = _takes_tap(apply_fn)

    def run(params, x, edits, acts, on_call):
        if tapped:
            def tap(layer, a):
                if not isinstance(layer, str):
                    raise TypeError(f"tap: a layer name must be a str; got {layer!r}")
                with jax.named_scope(probe_lib.layer_scope(layer)):
                    a = edits[layer](a) if layer in edits else a
                acts[layer] = a
                if on_call is not None:
                    on_call(layer, apply_fn, a)
                return a
            return apply_fn(params, x, tap=tap)
        out = apply_fn(params, x)
        if (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)
                and options.get("output") is None):
            out, named = out
            if edits:
                raise ValueError(f"edits at {sorted(edits)}: this function returns its "
                                 f"intermediates but takes no `tap`, so they cannot be "
                                 f"edited; write it as apply_fn(params, x, tap)")
            for layer, a in named.items():
                acts[layer] = a
                if on_call is not None:
                    on_call(layer, apply_fn, a)
        return out

    return probe_lib.Probe(run, params, kind=name or "function",
                           structure=("function", probe_lib.freeze(apply_fn)),
                           **probe_lib.spec_of(None, options))
