"""One adapter per model library, behind one protocol: how jaxviz sees a model.

An `Adapter` turns a library's model object into a `jaxviz.core.probe.Probe`, which is
everything an analysis needs:

    parameters      a pytree (`probe.params`); analyses take params as an argument
    apply           `probe.run(params, x, edits, on_call)` in inference mode (dropout off,
                    batch-norm running statistics), images x: (N, H, W, C)
    named layers    their activations (`acts`), each layer's ops under the jax name scope
                    `probe.layer_scope(name)`, edits replacing a layer's output
    layer arrays    `param_tree(params)`: {layer path: {"kernel", "bias", ...}} with the
                    names and layouts jaxviz reads (a 2-D conv kernel is (kh, kw, in, out))
    input spec      input_shape, input_range, num_classes (on the Probe)
    structure key   what compiled code depends on (never the weights)

The adapters: `nnx` (Flax NNX), `linen` (Flax Linen), `equinox`, `keras` (Keras 3 on JAX),
and `jaxviz.core.probe.from_function` for anything else. Adding a library is one file
here that defines an `Adapter` and calls `register` on it; `from_model` then dispatches
to it, and nothing else in jaxviz changes. An adapter must not import its library until
asked about an object (`claims` looks in `sys.modules`), so jaxviz never imports Keras or
Equinox for a user who has neither.

`on_call(name, module, activation)` receives, as `module`, the library's own layer object
(NNX, Linen) or a `LayerView` of it (Equinox, Keras: their arrays live in `params`, not on
the layer); `own_arrays(module)` reads a layer's arrays either way.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Adapter:
    """How one library's models become Probes.

    name: the Probe's `kind` ("nnx", "equinox", ...).
    accepts: what it takes, in words, for the error listing every adapter.
    claims(model) -> bool: whether this adapter takes `model`.
    build(model, variables, options) -> Probe; options: output, apply_kwargs, method,
      input_shape, input_range (as `from_model` got them; None where not given).
    param_tree(params) -> {layer path: {array name: array}} as nested dicts, standard names
      ("kernel" (kh, kw, in, out) for 2-D convolutions, (in, out) for dense layers; "bias",
      "scale", and batch-norm "mean" / "var").
    own_arrays(module) -> dict or None: a layer object's own arrays by standard name, None
      when the object is not this library's.
    to_trainable(model, input_shape, seed) -> the nnx.Module `jaxviz train` fits (the model
      itself for NNX), or None for a library whose models are trained with its own tools.
    from_trained(model, trained) -> (model, variables) to analyse, where `to_trainable`
      gave another object (a Linen module and the trained variables).
    """

    name: str
    accepts: str
    claims: Callable[[Any], bool]
    build: Callable[..., Any]
    param_tree: Callable[[Any], Mapping]
    own_arrays: Callable[[Any], dict | None] = lambda module: None
    to_trainable: Callable[..., Any] | None = None
    from_trained: Callable[..., Any] = lambda model, trained: (trained, None)


_ADAPTERS: list[Adapter] = []


def register(adapter: Adapter) -> Adapter:
    """Add (or replace, by name) an adapter; `from_model` asks them in `adapters()` order."""
    _ADAPTERS[:] = [a for a in _ADAPTERS if a.name != adapter.name] + [adapter]
    return adapter


def unregister(name: str) -> None:
    """Remove the adapter called `name` (if any)."""
    _ADAPTERS[:] = [a for a in _ADAPTERS if a.name != name]


def adapters() -> tuple[Adapter, ...]:
    """Every adapter: the built-in ones in BUILTIN's order (whichever was imported first),
    then the registered ones in registration order."""
    _load_builtin()
    rank = {name: i for i, name in enumerate(BUILTIN)}
    return tuple(sorted(_ADAPTERS, key=lambda a: rank.get(a.name, len(rank))))


def for_model(model) -> Adapter:
    """The adapter that takes `model`, or a TypeError listing what is accepted."""
    for a in adapters():
        if a.claims(model):
            return a
    raise TypeError(f"model must be {accepted()}; got {type(model).__module__}."
                    f"{type(model).__qualname__}. For any other model, wrap a function: "
                    f"jaxviz.core.probe.from_function(apply_fn, params)")


def for_kind(kind: str) -> Adapter | None:
    return next((a for a in adapters() if a.name == kind), None)


def accepted() -> str:
    """'a Flax nnx.Module, ..., or a keras.Model ...': every adapter's `accepts`."""
    words = [a.accepts for a in adapters()]
    return ", ".join(words[:-1]) + ", or " + words[-1] if len(words) > 1 else words[0]


@dataclasses.dataclass(frozen=True, eq=False)
class LayerView:
    """A layer as `on_call` sees it where the library keeps its arrays outside the layer
    object: `module` the library's layer, `arrays` its arrays by standard name (traced
    values inside a trace), `epsilon` a normalisation layer's epsilon. Its type is named
    after the layer's class ("Conv2d", "Dense"), as summaries show it."""

    module: Any
    arrays: Mapping[str, Any]
    epsilon: float = 1e-5


_VIEW_TYPES: dict[str, type] = {}


def layer_view(module, arrays: Mapping, epsilon: float | None = None) -> LayerView:
    name = type(module).__name__
    if name not in _VIEW_TYPES:
        _VIEW_TYPES[name] = type(name, (LayerView,), {"__module__": __name__})
    eps = 1e-5 if epsilon is None else float(epsilon)
    return _VIEW_TYPES[name](module, dict(arrays), eps)


def own_arrays(module) -> dict:
    """A layer's own arrays by standard name ({"kernel", "bias"}, batch-norm "mean", "var",
    "scale"); {} for a layer no adapter knows."""
    if isinstance(module, LayerView):
        return dict(module.arrays)
    for a in adapters():
        found = a.own_arrays(module)
        if found is not None:
            return found
    return {}


def param_tree(probe, params) -> Mapping:
    """{layer path: {array name: array}} of `params` as the probe's adapter lays them out;
    a Probe built by hand: its params' "params" collection, or the params themselves."""
    adapter = for_kind(probe.kind)
    if adapter is not None:
        return adapter.param_tree(params)
    return params.get("params", params) if isinstance(params, Mapping) else {}


def layer_params(probe, params, layer: str) -> Mapping[str, Any]:
    """The arrays that belong to `layer` ({"kernel": ..., "bias": ...}), or a ValueError
    listing the layers that have some."""
    tree = param_tree(probe, params)
    node = tree
    for part in layer.split("."):
        key = int(part) if isinstance(node, Mapping) and part.isdigit() and int(part) in node \
            else part
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"layer {layer!r} has no parameters; layers with parameters: "
                             f"{param_layers(tree)}")
        node = node[key]
    return node


def param_layers(tree, prefix=()) -> list[str]:
    """The layer paths of a param tree that hold arrays of their own."""
    out = []
    for k, v in tree.items():
        if isinstance(v, Mapping):
            if any(not isinstance(x, Mapping) for x in v.values()):
                out.append(".".join(map(str, prefix + (k,))))
            out.extend(param_layers(v, prefix + (k,)))
    return out


BUILTIN = ("nnx", "linen", "equinox", "keras")
_builtin_loaded = False


def _load_builtin() -> None:
    # Imported on first use, not at package import: the adapters import jaxviz.core.probe.
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        for name in BUILTIN:
            importlib.import_module(f"{__name__}.{name}")
