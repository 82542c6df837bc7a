"""Model specs: the built-in "mnist_cnn" or a user's "package.module:factory".

A factory takes a seed (int) and returns the model with its input spec:

    model                                   an nnx.Module with an `input_shape` attribute
    (model, input_shape)                    input_shape = (H, W, C); pixel range (0, 1)
    (model, input_shape, input_range)       input_range = (lo, hi)

where model is an `nnx.Module` or a `linen.Module`. Linen models are trained through
`nnx.bridge.ToNNX` and analysed as Linen (layer names are their module paths), so every
`jaxviz` subcommand works on a user's network, not only the reference CNN. The spec
travels on the Probe (`probe.input_shape`, `input_range`, `num_classes`).
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
    input_range: tuple[float, float] = (0.0, 1.0)


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
    """The model `spec` names, initialised from `seed`, with its input spec."""
    model, shape, input_range = _unpack(resolve(spec)(seed), spec)
    if isinstance(model, nnx.Module):
        return Built(model, shape, None, input_range)
    wrapped = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(seed))
    nnx.bridge.lazy_init(wrapped, jnp.zeros((1, *shape), jnp.float32))
    return Built(wrapped, shape, model, input_range)


def _unpack(made, spec: str):
    """A factory's return value -> (model, input_shape, input_range), or a clear error."""
    expected = (f"model factory {spec!r} must return an nnx.Module with an `input_shape` "
                f"attribute, (model, (H, W, C)) or (model, (H, W, C), (lo, hi))")
    parts = made if isinstance(made, tuple) else (made,)
    if not 1 <= len(parts) <= 3 or not isinstance(parts[0], (nnx.Module, nn.Module)):
        raise ValueError(f"{expected}; got {type(made).__name__}")
    model = parts[0]
    shape = parts[1] if len(parts) > 1 else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"{expected}; got a {type(model).__name__} without input_shape")
    input_range = parts[2] if len(parts) > 2 else (0.0, 1.0)
    try:
        shape, input_range = probe_lib.check_spec(shape, input_range)
    except ValueError as err:
        raise ValueError(f"model factory {spec!r}: {err}") from None
    return model, shape, input_range


def to_probe(built: Built, model: nnx.Module | None = None) -> probe_lib.Probe:
    """A Probe over the (trained) model, carrying the factory's input spec: NNX as is,
    Linen through its own variables."""
    model = built.model if model is None else model
    spec = dict(input_shape=built.input_shape, input_range=built.input_range)
    if built.linen is None:
        return probe_lib.from_model(model, **spec)
    variables = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    if stats:
        variables["batch_stats"] = stats
    return probe_lib.from_model(built.linen, variables, apply_kwargs={}, **spec)
