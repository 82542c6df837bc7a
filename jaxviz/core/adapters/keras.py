"""Keras 3 on the JAX backend: a built `keras.Model` (Sequential, functional or subclassed).

    probe = from_model(model)              # layers by their Keras names: layer="preds"
    probe = from_model(load("model.keras"))

The model runs through `model.stateless_call(trainable, non_trainable, x, training=False)`
(when its `call` takes `training`), images x: (N, H, W, C) as Keras' channels-last
layers expect. Layers are every layer inside the model, named by their Keras names
(a layer of a nested model as "block.conv"); each one's `__call__` runs under
`layer_scope(name)`, records its output and applies edits (a per-class subclass swapped in
for the call, the classes restored after). Only layers the model calls are listed.

params: {"params": {layer: {name: array}}, "batch_stats": {...}, "state": {...}}: trainable
variables under "params", BatchNormalization's moving statistics under "batch_stats"
("mean", "var"), other non-trainable variables (seed generators) under "state"; names are
jaxviz's standard ones where Keras' differ (gamma -> "scale", beta -> "bias") and Keras'
layouts are already the standard ones (Conv2D kernel (kh, kw, in, out), Dense (in, out)).

KERAS_BACKEND is set to "jax" here only when Keras is not imported yet (and not set);
a Keras already running on another backend is refused, naming the fix.
"""
from __future__ import annotations

import os
import sys

import jax

from jaxviz.core import adapters, modes
from jaxviz.core import probe as probe_lib

_RENAME = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}
_STATS = ("moving_mean", "moving_variance")


def keras_module():
    """The keras module on the JAX backend, or a RuntimeError saying how to get it."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras  # noqa: PLC0415
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(f"Keras runs on the {backend!r} backend; jaxviz needs Keras on JAX: "
                           f"set KERAS_BACKEND=jax before Keras is first imported")
    return keras


def load(path):
    """A `.keras` file's model (keras.saving.load_model), on the JAX backend."""
    return keras_module().saving.load_model(os.fspath(path))


def _claims(model) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def _layers(layer, prefix: str = "") -> list[tuple[str, object]]:
    """[(path, layer)] of every layer inside `layer`, depth first, by Keras names."""
    out = []
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        path = f"{prefix}.{sub.name}" if prefix else sub.name
        out.append((path, sub))
        out.extend(_layers(sub, path))
    return out


def _slots(model):
    """{id(variable): (collection, layer path, standard name)} for every variable."""
    owners = [("", model)] + _layers(model)
    children = {path: [p for p, _ in owners if p.startswith(f"{path}.") or (not path and p)]
                for path, _ in owners}
    by_path = dict(owners)
    slots = {}
    for path, layer in owners:
        inner = {id(v) for p in children[path] for v in by_path[p].variables}
        for v in layer.trainable_variables + layer.non_trainable_variables:
            if id(v) in inner or id(v) in slots:
                continue
            name = v.name
            collection = ("params" if v.trainable else
                          "batch_stats" if name in _STATS else "state")
            slots[id(v)] = (collection, path or "_model", _RENAME.get(name, name))
    return slots


def _node(tree, path: str) -> dict:
    node = tree
    for part in path.split("."):
        node = node[part]
    return node


def _put(tree: dict, collection: str, path: str, name: str, value) -> None:
    node = tree.setdefault(collection, {})
    for part in path.split("."):
        node = node.setdefault(part, {})
    node[name] = value


def input_shape_of(model):
    """One image's (H, W, C) from the model's first input, or None."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return shape if len(shape) == 3 and all(isinstance(s, int) for s in shape) else None


def _tapper(names, edits, acts, on_call, arrays):
    tapped: dict[type, type] = {}

    def tap_class(cls):
        if cls not in tapped:
            def __call__(self, *args, **kwargs):
                name = names.get(id(self))
                if name is None:  # a layer outside the model's tree (made inside call)
                    return cls.__call__(self, *args, **kwargs)
                with jax.named_scope(probe_lib.layer_scope(name)):
                    a = cls.__call__(self, *args, **kwargs)
                if name in edits:
                    a = edits[name](a)
                acts[name] = a
                if on_call is not None:
                    on_call(name, adapters.layer_view(self, arrays(name),
                                                      getattr(self, "epsilon", None)), a)
                return a
            tapped[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
        return tapped[cls]
    return tap_class


def softmax_head(model):
    """The layer whose softmax activation gives the model's one output (a Sequential's or
    functional model's `Dense(..., activation="softmax")`), else None. jaxviz explains
    logits, so the Probe runs that layer without its softmax: the seed recipe's "swap
    softmax for linear", done on every call and undone after it, the model left as it is."""
    keras = keras_module()
    outputs = getattr(model, "outputs", None)
    try:
        layer = outputs[0]._keras_history.operation if len(outputs) == 1 else None
    except (AttributeError, TypeError, IndexError):
        return None
    return layer if getattr(layer, "activation", None) is keras.activations.softmax else None


def build(model, variables, options) -> probe_lib.Probe:
    keras_module()
    if variables is not None:
        raise ValueError("variables: a keras.Model carries its own variables; pass only the "
                         "model")
    if options.get("method") is not None:
        raise ValueError("method: only for Linen modules; a keras.Model runs its call")
    if not model.built or not model.variables:
        raise ValueError(f"model: this {type(model).__name__} is not built (it has no "
                         f"weights yet); build it first, e.g. with keras.Input(shape) as its "
                         f"first layer or by calling it once on a batch")
    slots = _slots(model)
    tv_slots = [slots[id(v)] for v in model.trainable_variables]
    ntv_slots = [slots[id(v)] for v in model.non_trainable_variables]
    params: dict = {}
    for (collection, path, name), v in zip(tv_slots + ntv_slots,
                                           model.trainable_variables +
                                           model.non_trainable_variables):
        # A copy: Keras' fit/predict/evaluate donate the variables' buffers to their jitted
        # steps, which would delete the arrays of a Probe built before them.
        _put(params, collection, path, name, jax.numpy.array(v.value, copy=True))
    layers = _layers(model)
    keras, head = keras_module(), softmax_head(model)
    apply_kwargs = modes.inference_kwargs(type(model).call, options.get("apply_kwargs"))

    def run(params, x, edits, acts, on_call):
        def arrays(name):
            out = {}
            for collection in ("params", "batch_stats"):
                try:
                    node = _node(params.get(collection, {}), name)
                except KeyError:
                    continue
                out.update({k: v for k, v in node.items() if not isinstance(v, dict)})
            return out

        tv = [_node(params[c], p)[n] for c, p, n in tv_slots]
        ntv = [_node(params[c], p)[n] for c, p, n in ntv_slots]
        names = {id(layer): path for path, layer in layers}
        tap_class = _tapper(names, edits, acts, on_call, arrays)
        original = [(layer, type(layer)) for _, layer in layers]
        try:
            for layer, cls in original:
                object.__setattr__(layer, "__class__", tap_class(cls))
            if head is not None:
                object.__setattr__(head, "activation", keras.activations.linear)
            out, _ = model.stateless_call(tv, ntv, x, **apply_kwargs)
        finally:
            for layer, cls in original:
                object.__setattr__(layer, "__class__", cls)
            if head is not None:
                object.__setattr__(head, "activation", keras.activations.softmax)
        return out

    structure = ("keras", probe_lib.freeze(type(model)), ("id", id(model)),
                 probe_lib.freeze(apply_kwargs), head is not None)
    note = None if head is None else f"outputs the logits of {head.name!r} (its softmax left out)"
    return probe_lib.Probe(run, params, kind="keras", structure=structure, note=note,
                           **probe_lib.spec_of(model, options, input_shape_of(model)))


def _param_tree(params):
    return params.get("params", {})


ADAPTER = adapters.register(adapters.Adapter(
    name="keras", accepts="a keras.Model (Keras 3 on the JAX backend)",
    claims=_claims, build=build, param_tree=_param_tree))
