"""Flax Linen: a `linen.Module` with its variables.

    probe = from_model(module, variables)   # params: the variables ({"params", ...})

Layers are the submodules, named by module path ("conv1", "block.conv"); each one's
`__call__` is intercepted (`nn.intercept_methods`) to run under `layer_scope(name)`,
record its output and apply edits. Mode flags the module's `__call__` (or `method`) takes
get their inference values; a module that still updates a collection is refused.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import errors as flax_errors
from flax import linen as nn
from flax import nnx

from jaxviz.core import adapters, modes
from jaxviz.core import probe as probe_lib
from jaxviz.core.adapters.nnx import linen_variable


def build(module: nn.Module, variables, options) -> probe_lib.Probe:
    if variables is None:
        raise ValueError("variables: a linen.Module needs its variables, e.g. "
                         "from_model(module, module.init(key, x))")
    method = options.get("method")
    apply_kwargs = modes.inference_kwargs(modes.call_target(module, method),
                                          options.get("apply_kwargs"))

    def run(variables, x, edits, acts, on_call):
        def interceptor(next_fun, args, kwargs, context):
            path = context.module.path
            if context.method_name != "__call__" or not path:
                return next_fun(*args, **kwargs)
            name = ".".join(map(str, path))
            with jax.named_scope(probe_lib.layer_scope(name)):
                a = next_fun(*args, **kwargs)
            if name in edits:
                a = edits[name](a)
            acts[name] = a
            if on_call is not None:
                on_call(name, context.module, a)
            return a

        with nn.intercept_methods(interceptor):
            try:
                return module.apply(variables, x, method=method, **apply_kwargs)
            except flax_errors.ModifyScopeVariableError as err:
                raise modes.refuse_mutation(linen_variable(err), apply_kwargs) from None

    structure = (probe_lib.freeze(module), probe_lib.freeze(method),
                 probe_lib.freeze(apply_kwargs))
    return probe_lib.Probe(run, variables, kind="linen", structure=structure,
                           **probe_lib.spec_of(module, options))


def _param_tree(variables):
    return variables.get("params", variables)


def _own_arrays(module):
    if not isinstance(module, nn.Module):
        return None
    out = {}
    for collection in module.variables.values():
        out.update({k: v for k, v in collection.items() if hasattr(v, "shape")})
    return out


def _to_trainable(module: nn.Module, input_shape, seed: int) -> nnx.Module:
    """The module inside `nnx.bridge.ToNNX`, initialised on one (1, H, W, C) zero batch in
    inference mode (a `train` argument without a default still gets one)."""
    wrapped = nnx.bridge.ToNNX(module, rngs=nnx.Rngs(seed))
    flags = modes.mode_kwargs(modes.call_target(module), training=False)
    nnx.bridge.lazy_init(wrapped, jnp.zeros((1, *input_shape), jnp.float32), **flags)
    return wrapped


def _from_trained(module: nn.Module, trained: nnx.Module):
    """(module, variables) with the weights and batch statistics of the trained wrapper."""
    variables = {"params": nnx.to_pure_dict(nnx.state(trained, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(trained, nnx.BatchStat))
    if stats:
        variables["batch_stats"] = stats
    return module, variables


ADAPTER = adapters.register(adapters.Adapter(
    name="linen", accepts="a Flax linen.Module with its variables",
    claims=lambda model: isinstance(model, nn.Module),
    build=build, param_tree=_param_tree, own_arrays=_own_arrays,
    to_trainable=_to_trainable, from_trained=_from_trained))
