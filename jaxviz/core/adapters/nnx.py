"""Flax NNX: an `nnx.Module` (a Linen model inside `nnx.bridge.ToNNX` included).

    probe = from_model(model)      # params: the model's nnx.State

Layers are the submodules, named by attribute path ("conv1", "block.conv", "layers.0");
each runs under `layer_scope(name)` through a per-class subclass swapped in on a private
copy of the model, which also gets `eval()`: the user's model keeps its mode and values.
A model whose variables still change in inference mode is refused (`modes.refuse_mutation`).
"""
from __future__ import annotations

import re

import jax
from flax import errors as flax_errors
from flax import nnx

from jaxviz.core import adapters, modes
from jaxviz.core import probe as probe_lib

# Variables a model may change in inference mode without its outputs depending on the batch.
_UNWATCHED = nnx.Any(nnx.RngState, nnx.Intermediate)


def _values(state) -> dict:
    return {jax.tree_util.keystr(k): v
            for k, v in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))[0]}


def linen_variable(err) -> str:
    """'its variable "mean" in "/bn" (collection "batch_stats")' from Linen's error text."""
    found = re.search(r'variable "(.*?)" in "(.*?)" because collection "(.*?)"', str(err))
    if found is None:
        return "a variable"
    name, scope, collection = found.groups()
    return f'its variable "{name}" in "{scope}" (collection "{collection}")'


def _tapper(names, edits, acts, on_call):
    """cls -> a subclass whose __call__ records (and edits) the layer's output, one per class."""
    tapped: dict[type, type] = {}

    def tap_class(cls):
        if cls not in tapped:
            def __call__(self, *args, **kwargs):
                name = names[id(self)]
                with jax.named_scope(probe_lib.layer_scope(name)):
                    a = cls.__call__(self, *args, **kwargs)
                if name in edits:
                    a = edits[name](a)
                acts[name] = a
                if on_call is not None:
                    on_call(name, self, a)
                return a
            tapped[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
        return tapped[cls]
    return tap_class


def build(model: nnx.Module, variables, options) -> probe_lib.Probe:
    if variables is not None:
        raise ValueError("variables: an nnx.Module carries its own state; pass only the model")
    if options.get("method") is not None:
        raise ValueError("method: only for Linen modules; an nnx.Module runs its __call__")
    apply_kwargs = modes.inference_kwargs(modes.call_target(model), options.get("apply_kwargs"))
    graphdef, state = nnx.split(model)

    def run(state, x, edits, acts, on_call):
        # A private copy (new Variables): the user's model keeps its mode and its values.
        m = nnx.merge(graphdef, state, copy=True)
        m.eval()
        before = _values(nnx.state(m, nnx.Not(_UNWATCHED)))
        names = {id(sub): ".".join(map(str, path)) for path, sub in nnx.iter_modules(m) if path}
        tap_class = _tapper(names, edits, acts, on_call)
        for path, sub in nnx.iter_modules(m):
            if path:
                object.__setattr__(sub, "__class__", tap_class(type(sub)))
        try:
            out = m(x, **apply_kwargs)
        except flax_errors.ModifyScopeVariableError as err:  # a Linen model in nnx.bridge.ToNNX
            raise modes.refuse_mutation(linen_variable(err), apply_kwargs) from None
        after = _values(nnx.state(m, nnx.Not(_UNWATCHED)))
        changed = [k for k, v in after.items() if before.get(k) is not v]
        if changed:
            raise modes.refuse_mutation(f"its variable {changed[0]}", apply_kwargs)
        return out

    return probe_lib.Probe(run, state, kind="nnx",
                           structure=(graphdef, probe_lib.freeze(apply_kwargs)),
                           **probe_lib.spec_of(model, options))


def _own_arrays(module):
    if not isinstance(module, nnx.Module):
        return None
    return {k: v.get_value() for k, v in vars(module).items() if isinstance(v, nnx.Variable)}


ADAPTER = adapters.register(adapters.Adapter(
    name="nnx", accepts="a Flax nnx.Module",
    claims=lambda model: isinstance(model, nnx.Module),
    build=build, param_tree=nnx.to_pure_dict, own_arrays=_own_arrays,
    to_trainable=lambda model, input_shape, seed: model))
