"""Model specs: the built-in "mnist_cnn", a user's "package.module:factory",
"path/to/file.py:factory", or a saved Keras model "path/to/model.keras".

The current directory is importable for "package.module:factory" (as uvicorn and gunicorn
do), and a file's own directory for "file.py:factory", so the file may import its
neighbours. A factory takes a seed (int) and returns the model with its input spec:

    ModelSpec(model, input_shape, input_range=(0, 1), num_classes=None, output=None)
    model                                   a model with an `input_shape` attribute
    (model, input_shape)                    input_shape = (H, W, C); pixel range (0, 1)
    (model, input_shape, input_range)       input_range = (lo, hi)

where model is any model `jaxviz.core.adapters` takes (Flax NNX or Linen, Equinox, Keras
3); `num_classes`, when given, is checked against the model's output; `output` selects
the logits of a model returning a dict or tuple. `jaxviz train` fits the models whose
adapter says how (NNX as is, Linen through `nnx.bridge.ToNNX`, analysed as Linen again:
layer names are their module paths); a Keras or Equinox model is trained with its own
library and analysed as it is: a `.keras` file is its model with its own weights, input
shape from its first input. So every `jaxviz` subcommand works on a user's network, not
only the reference CNN. The spec travels on the Probe (`probe.input_shape`,
`input_range`, `num_classes`); its input range counts as declared, so the Python API checks
images against it as the data loaders do.

Every failure of loading the user's code (a missing file or factory, a SyntaxError, an
exception while importing the file, in the factory or in the model's first call) is one
ValueError on one line: the spec, "path:line" of the deepest frame in the user's file (where
Python gives one), and the original error's type and message (`--debug` shows the chain).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NamedTuple

from flax import nnx

from jaxviz.core import adapters
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN


class ModelSpec(NamedTuple):
    """What a factory may return: the model and its input spec (see the module docstring)."""
    model: Any  # any model an adapter takes (jaxviz.core.adapters)
    input_shape: tuple[int, int, int]
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    output: Any = None  # key, index or callable selecting the logits


class Built(NamedTuple):
    model: Any  # what `jaxviz train` fits (Linen wrapped in ToNNX), or a model trained by
    # its own library (Keras, Equinox), analysed as it is
    input_shape: tuple[int, int, int]
    linen: Any  # the factory's model where `model` is another form of it (Linen), else None
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    output: Any = None


def _mnist_cnn(seed: int):
    return MnistCNN(rngs=nnx.Rngs(seed))


BUILTIN = {"mnist_cnn": _mnist_cnn}


def _is_keras_file(spec: str) -> bool:
    return spec.endswith(".keras")


def _keras_factory(spec: str):
    """A saved Keras model as a factory: the file's model (its own weights; the seed is
    unused) with the input shape of its first input."""
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"model {spec!r}: file {str(path)!r} does not exist")

    def load(seed: int) -> ModelSpec:
        from jaxviz.core.adapters import keras as keras_adapter  # noqa: PLC0415
        model = keras_adapter.load(path)
        shape = keras_adapter.input_shape_of(model)
        if shape is None:
            raise ValueError(f"the model's input shape is not one image's (H, W, C): "
                             f"{getattr(model, 'inputs', None)}")
        return ModelSpec(model, shape)
    return load, str(path)


def _is_file_spec(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def canonical(spec: str) -> str:
    """The spec as stored in a run's config: a file path made absolute, so later commands
    find the file from any directory. Other specs unchanged."""
    if _is_keras_file(spec):
        return str(Path(spec).expanduser().resolve())
    module_part, sep, attr = spec.rpartition(":")
    if sep and _is_file_spec(module_part):
        return f"{Path(module_part).expanduser().resolve()}:{attr}"
    return spec


def _one_line(text: str, limit: int = 400) -> str:
    """An exception's message on one line (the CLI's errors are one line), at most limit
    characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _user_line(err: BaseException, files) -> str:
    """"path:line" of the deepest traceback frame of err inside one of `files` (the user's
    model file or module), or "" when none is. A SyntaxError points at its own line."""
    if isinstance(err, SyntaxError) and err.filename and err.lineno:
        return f"{err.filename}:{err.lineno}"
    wanted = {str(Path(f).resolve()) for f in files if f}
    found = ""
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        name = frame.f_code.co_filename
        if name in wanted or (name and str(Path(name).resolve()) in wanted):
            found = f"{name}:{lineno}"
    return found


def _load_error(spec: str, err: BaseException, files, during: str) -> ValueError:
    """One line: the spec, where in the user's file, the original type and message."""
    where = _user_line(err, files)
    what = err.msg if isinstance(err, SyntaxError) and err.msg else str(err)
    at = f"{where}: " if where else ""
    return ValueError(f"model {spec!r}: {at}{type(err).__name__}: {_one_line(what)} "
                      f"({during})")


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
    except Exception as err:
        del sys.modules[name]
        raise _load_error(spec, err, [str(path)], "while importing the file") from err
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(module_name: str, spec: str):
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name
                                     or module_name.startswith(err.name + ".")):
            raise  # the module itself is missing: resolve says "cannot import"
        raise _load_error(spec, err, [_module_origin(module_name)],
                          "while importing the module") from err
    except Exception as err:
        raise _load_error(spec, err, [_module_origin(module_name)],
                          "while importing the module") from err


def _module_origin(module_name: str) -> str | None:
    """The file of module_name (even when importing it failed), or None."""
    try:
        found = importlib.util.find_spec(module_name)
    except Exception:  # noqa: BLE001 -- a parent package that fails to import: no file
        return None
    return getattr(found, "origin", None)


def _factory_names(module) -> list[str]:
    """The public callables a module defines itself (what a factory could be)."""
    return [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
            and getattr(v, "__module__", None) == module.__name__]


def _resolve(spec: str):
    """(factory, its module's file or None) for a spec, or a one-line ValueError."""
    if spec in BUILTIN:
        return BUILTIN[spec], None
    if _is_keras_file(spec):
        return _keras_factory(spec)
    if ":" not in spec:
        raise ValueError(f"model must be one of {list(BUILTIN)}, 'package.module:factory', "
                         f"'path/to/file.py:factory' or 'path/to/model.keras'; got {spec!r}")
    module_part, attr = spec.rsplit(":", 1)
    try:
        module = (_import_file(module_part, spec) if _is_file_spec(module_part)
                  else _import_module(module_part, spec))
    except ImportError as err:
        raise ValueError(f"model {spec!r}: cannot import {attr!r} from {module_part!r} "
                         f"({_one_line(err)})") from err
    where = getattr(module, "__file__", None)
    if not hasattr(module, attr):
        raise ValueError(f"model {spec!r}: cannot import {attr!r} from {module_part!r} "
                         f"({where} has no {attr!r}; it defines {_factory_names(module)})")
    factory = getattr(module, attr)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: {attr!r} in {where} is not callable "
                         f"(a {type(factory).__name__})")
    return factory, where


def resolve(spec: str):
    """The factory a spec names, or a ValueError saying what was expected."""
    return _resolve(spec)[0]


def build(spec: str, seed: int = 0) -> Built:
    """The model `spec` names, initialised from `seed`, with its input spec. Every failure
    of the user's code (importing the file, the factory, the model's first call) is one
    ValueError naming the spec, the file and line in it, and the original error."""
    factory, origin = _resolve(spec)
    attr = spec.rsplit(":", 1)[-1]
    files = [origin, getattr(getattr(factory, "__code__", None), "co_filename", None)]
    try:
        made = factory(seed)
    except Exception as err:
        raise _load_error(spec, err, files, f"in factory {attr!r}") from err
    made = _unpack(made, spec)
    model, shape = made.model, made.input_shape
    to_trainable = adapters.for_model(model).to_trainable
    trainable = model
    if to_trainable is not None:
        try:
            trainable = to_trainable(model, shape, seed)
        except Exception as err:
            raise _load_error(spec, err, files + [_class_file(model)],
                              f"initialising the model of factory {attr!r} on "
                              f"(1, {', '.join(map(str, shape))}) inputs") from err
    built = Built(trainable, shape, None if trainable is model else model, made.input_range,
                  made.num_classes, made.output)
    return _check_classes(built, spec, files + [_class_file(model)])


def _class_file(obj) -> str | None:
    module = sys.modules.get(type(obj).__module__)
    return getattr(module, "__file__", None)


def _unpack(made, spec: str) -> ModelSpec:
    """A factory's return value -> ModelSpec (validated), or a clear error."""
    expected = (f"model factory {spec!r} must return a registry.ModelSpec, a model "
                f"with an `input_shape` attribute, (model, (H, W, C)) or "
                f"(model, (H, W, C), (lo, hi)), the model {adapters.accepted()}")
    if isinstance(made, ModelSpec):
        parts = tuple(made)
    else:
        parts = made if isinstance(made, tuple) else (made,)
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"{expected}; got a tuple of {len(parts)}")
    try:
        adapters.for_model(parts[0])
    except TypeError:
        raise ValueError(f"{expected}; got {type(parts[0]).__name__}") from None
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


def _check_classes(built: Built, spec: str, files=()) -> Built:
    """Fill num_classes from the model's output for its input shape; a declared count must
    match it."""
    try:
        out = to_probe(built).output_shape((1, *built.input_shape))
    except Exception as err:
        attr = spec.rsplit(":", 1)[-1]
        raise _load_error(spec, err, files, f"calling the model of factory {attr!r} on (1, "
                          f"{', '.join(map(str, built.input_shape))}) inputs") from err
    if len(out) != 2:
        raise ValueError(f"model {spec!r} must output (N, K) logits for (N, "
                         f"{', '.join(map(str, built.input_shape))}) inputs; got {tuple(out)}")
    if built.num_classes is not None and built.num_classes != out[1]:
        raise ValueError(f"model factory {spec!r} declares num_classes={built.num_classes} "
                         f"but the model outputs {out[1]} logits")
    return built._replace(num_classes=int(out[1]))


def to_probe(built: Built, model=None) -> probe_lib.Probe:
    """A Probe over the (trained) model, carrying the factory's input spec: the model as
    is, or where it was trained in another form (Linen through nnx.bridge), the factory's
    model with the trained weights (its adapter's `from_trained`)."""
    model = built.model if model is None else model
    spec = dict(input_shape=built.input_shape, input_range=built.input_range,
                output=built.output)
    if built.linen is None:
        return probe_lib.from_model(model, **spec)
    original, variables = adapters.for_model(built.linen).from_trained(built.linen, model)
    return probe_lib.from_model(original, variables, apply_kwargs={}, **spec)
