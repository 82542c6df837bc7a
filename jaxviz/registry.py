"""Model specs: the built-in "mnist_cnn", a user's "package.module:factory" or
"path/to/file.py:factory".

The current directory is importable for "package.module:factory" (as uvicorn and gunicorn
do), and a file's own directory for "file.py:factory", so the file may import its
neighbours. A factory takes a seed (int) and returns the model with its input spec:

    ModelSpec(model, input_shape, input_range=(0, 1), num_classes=None, output=None)
    model                                   an nnx.Module with an `input_shape` attribute
    (model, input_shape)                    input_shape = (H, W, C); pixel range (0, 1)
    (model, input_shape, input_range)       input_range = (lo, hi)

where model is an `nnx.Module` or a `linen.Module`; `num_classes`, when given, is checked
against the model's output; `output` selects the logits of a model returning a dict or
tuple. Linen models are trained through `nnx.bridge.ToNNX` and analysed as Linen (layer
names are their module paths), so every `jaxviz` subcommand works on a user's network,
not only the reference CNN. The spec travels on the Probe (`probe.input_shape`,
`input_range`, `num_classes`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxviz.core import modes
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN


class ModelSpec(NamedTuple):
    """What a factory may return: the model and its input spec (see the module docstring)."""
    model: Any  # nnx.Module or linen.Module
    input_shape: tuple[int, int, int]
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    output: Any = None  # key, index or callable selecting the logits


class Built(NamedTuple):
    model: nnx.Module  # trainable (Linen wrapped in ToNNX)
    input_shape: tuple[int, int, int]
    linen: nn.Module | None
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    output: Any = None


def _mnist_cnn(seed: int):
    return MnistCNN(rngs=nnx.Rngs(seed))


BUILTIN = {"mnist_cnn": _mnist_cnn}


def _is_file_spec(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def canonical(spec: str) -> str:
    """The spec as stored in a run's config: a file path made absolute, so later commands
    find the file from any directory. Other specs unchanged."""
    module_part, sep, attr = spec.rpartition(":")
    if sep and _is_file_spec(module_part):
        return f"{Path(module_part).expanduser().resolve()}:{attr}"
    return spec


def _import_file(path_text: str, spec: str):
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"model {spec!r}: file {str(path)!r} does not exist")
    # One module object per file: building twice gives the same classes (equal Probes).
    name = f"_jaxviz_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(module_name: str):
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def resolve(spec: str):
    """The factory a spec names, or a ValueError saying what was expected."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" not in spec:
        raise ValueError(f"model must be one of {list(BUILTIN)}, 'package.module:factory' or "
                         f"'path/to/file.py:factory'; got {spec!r}")
    module_part, attr = spec.rsplit(":", 1)
    try:
        module = (_import_file(module_part, spec) if _is_file_spec(module_part)
                  else _import_module(module_part))
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model {spec!r}: cannot import {attr!r} from {module_part!r} "
                         f"({err})") from err
    if not callable(factory):
        raise ValueError(f"model {spec!r} is not callable")
    return factory


def build(spec: str, seed: int = 0) -> Built:
    """The model `spec` names, initialised from `seed`, with its input spec."""
    made = _unpack(resolve(spec)(seed), spec)
    model, shape = made.model, made.input_shape
    if isinstance(model, nnx.Module):
        built = Built(model, shape, None, made.input_range, made.num_classes, made.output)
    else:
        wrapped = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(seed))
        # Initialised in inference mode: a `train` argument without a default still gets one.
        flags = modes.mode_kwargs(modes.call_target(model), training=False)
        nnx.bridge.lazy_init(wrapped, jnp.zeros((1, *shape), jnp.float32), **flags)
        built = Built(wrapped, shape, model, made.input_range, made.num_classes, made.output)
    return _check_classes(built, spec)


def _unpack(made, spec: str) -> ModelSpec:
    """A factory's return value -> ModelSpec (validated), or a clear error."""
    expected = (f"model factory {spec!r} must return a registry.ModelSpec, an nnx.Module "
                f"with an `input_shape` attribute, (model, (H, W, C)) or "
                f"(model, (H, W, C), (lo, hi))")
    if isinstance(made, ModelSpec):
        parts = tuple(made)
    else:
        parts = made if isinstance(made, tuple) else (made,)
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"{expected}; got a tuple of {len(parts)}")
    if not isinstance(parts[0], (nnx.Module, nn.Module)):
        raise ValueError(f"{expected}; got {type(parts[0]).__name__}")
    model = parts[0]
    shape = parts[1] if len(parts) > 1 else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"{expected}; got a {type(model).__name__} without input_shape")
    input_range = parts[2] if len(parts) > 2 else (0.0, 1.0)
    try:
        shape, input_range = probe_lib.check_spec(shape, input_range)
    except ValueError as err:
        raise ValueError(f"model factory {spec!r}: {err}") from None
    rest = parts[3:] if len(parts) > 3 else (None, None)
    k = rest[0]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"model factory {spec!r}: num_classes must be a positive int; got {k!r}")
    return ModelSpec(model, shape, input_range, k, rest[1])


def _check_classes(built: Built, spec: str) -> Built:
    """Fill num_classes from the model's output for its input shape; a declared count must
    match it."""
    out = to_probe(built).output_shape((1, *built.input_shape))
    if len(out) != 2:
        raise ValueError(f"model {spec!r} must output (N, K) logits for (N, "
                         f"{', '.join(map(str, built.input_shape))}) inputs; got {tuple(out)}")
    if built.num_classes is not None and built.num_classes != out[1]:
        raise ValueError(f"model factory {spec!r} declares num_classes={built.num_classes} "
                         f"but the model outputs {out[1]} logits")
    return built._replace(num_classes=int(out[1]))


def to_probe(built: Built, model: nnx.Module | None = None) -> probe_lib.Probe:
    """A Probe over the (trained) model, carrying the factory's input spec: NNX as is,
    Linen through its own variables."""
    model = built.model if model is None else model
    spec = dict(input_shape=built.input_shape, input_range=built.input_range,
                output=built.output)
    if built.linen is None:
        return probe_lib.from_model(model, **spec)
    variables = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    if stats:
        variables["batch_stats"] = stats
    return probe_lib.from_model(built.linen, variables, apply_kwargs={}, **spec)
