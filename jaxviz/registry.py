"""Model specs: the built-in "mnist_cnn" or a user's "package.module:factory".

A factory takes a seed (int) and returns either an `nnx.Module`, or a pair
`(linen_module, input_shape)` with input_shape = (H, W, C). Linen models are trained through
`nnx.bridge.ToNNX` and analysed as Linen (layer names are their module paths), so every
`jaxviz` subcommand works on a user's network, not only the reference CNN.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN


class Built(NamedTuple):
    model: nnx.Module  # trainable (Linen wrapped in ToNNX)
    input_shape: tuple[int, int, int]
    linen: nn.Module | None


def _mnist_cnn(seed: int):
    return MnistCNN(rngs=nnx.Rngs(seed))


BUILTIN = {"mnist_cnn": _mnist_cnn}


def resolve(spec: str):
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" not in spec:
        raise ValueError(f"model must be one of {list(BUILTIN)} or 'package.module:factory'; "
                         f"got {spec!r}")
    module_name, attr = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model {spec!r}: cannot import {attr!r} from {module_name!r} ({err})") from err
    if not callable(factory):
        raise ValueError(f"model {spec!r} is not callable")
    return factory


def build(spec: str, seed: int = 0) -> Built:
    made = resolve(spec)(seed)
    if isinstance(made, nnx.Module):
        return Built(made, (28, 28, 1), None)
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        module, shape = made
        wrapped = nnx.bridge.ToNNX(module, rngs=nnx.Rngs(seed))
        nnx.bridge.lazy_init(wrapped, jnp.zeros((1, *shape), jnp.float32))
        return Built(wrapped, tuple(shape), module)
    raise ValueError(f"model factory {spec!r} must return an nnx.Module or "
                     f"(linen.Module, (H, W, C)); got {type(made).__name__}")


def to_probe(built: Built, model: nnx.Module | None = None) -> probe_lib.Probe:
    """A Probe over the (trained) model: NNX as is, Linen through its own variables."""
    model = built.model if model is None else model
    if built.linen is None:
        return probe_lib.from_model(model)
    variables = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    if stats:
        variables["batch_stats"] = stats
    return probe_lib.from_model(built.linen, variables, apply_kwargs={})
