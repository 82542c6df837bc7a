"""The pure boundary every analysis uses: any Flax model (NNX or Linen) as functions of arrays.

    probe = jaxviz.core.probe.from_model(model)           # an nnx.Module
    probe = jaxviz.core.probe.from_model(module, variables)  # a linen.Module and its variables
    logits = probe(probe.params, x)                  # apply_fn(params, x) -> logits
    logits, acts = probe.run(probe.params, x)        # acts: {"conv1": ..., "conv2": ...}
    logits, acts = probe.run(params, x, edits={"conv2": lambda a: a + delta})

Layers are the model's submodules, named by their attribute path joined with "."
("conv1", "block.conv", "layers.0"); a layer's activation is the output of its
`__call__`; the ops it traces run under the name scope `layer_scope(name)`, so a jaxpr
of the model says which layer each equation belongs to. `edits` replace a layer's output
while the model runs, which is how gradients at a layer are taken without editing the
model's code. The model always runs in inference mode, so dropout and batch-norm
statistics never depend on batching: NNX models get `eval()` on a private copy, and a
`__call__` that takes `train`, `training`, `deterministic` or `use_running_average` (NNX or
Linen) gets its inference value without being asked (`jaxviz.core.modes`); a flag named in
`apply_kwargs` wins. A model that still changes its variables when called that way (a
BatchNorm with `use_running_average=False` fixed, a Linen `batch_stats` update) is refused
with a ValueError the first time it runs, naming the variable: its outputs would depend on
the batch. (RNG counters and `sow`n intermediates are not checked.)

A Probe also carries the model's input spec: `input_shape` (H, W, C) (from
`from_model(..., input_shape=...)` or the model's own `input_shape` attribute),
`input_range` (lo, hi) and `num_classes` (read off the output for that input shape).
A range given to `from_model` is declared (`range_declared`): analyses then refuse float
images outside it and map uint8 pixels onto it, as the data loaders do; without one,
(0, 1) is assumed (activation maximization stays inside it) and images are not checked.

Probes compare and hash by structure (model structure, output selector, parameter shapes
and dtypes, input spec), never by weights: a fresh `from_model` of the same model with new
weights is an equal static argument, so jitted analyses reuse their compiled code. Pass
`static_view(probe)` (equal, but holding no arrays) as the static argument so a compiled
cache never keeps weights alive.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import errors as flax_errors
from flax import linen as nn
from flax import nnx

from jaxviz.core import modes

Edits = Mapping[str, Callable[[jax.Array], jax.Array]]


def layer_scope(name: str) -> str:
    """The `jax.named_scope` a layer's own ops are traced under ("jaxviz[conv1]")."""
    return f"jaxviz[{name}]"


class Probe:
    """A model as pure functions. Call it as `probe(params, x) -> logits` (an apply_fn).

    run(params, x, edits=None, on_call=None) -> (output, {layer name: activation}).
    `on_call(name, module, activation)` is called for each layer in call order while tracing.
    params: the weights `from_model` found (read-only; analyses take params as an argument).
    input_shape: (H, W, C) or None (unknown); input_range: (lo, hi) of valid pixel values,
    (0, 1) when None is given; range_declared: whether it was given (analyses check images
    against a declared range only); num_classes: K of the (N, K) output for input_shape,
    or None.
    Equal (and hash-equal) to any Probe of the same structure, whatever its weights.
    """

    def __init__(self, run_fn, params, *, kind: str, structure, output=None,
                 input_shape=None, input_range=None):
        self._run = run_fn
        self._params = params
        self.kind = kind
        self.output = output
        self.input_shape = _input_shape(input_shape)
        self.range_declared = input_range is not None
        self.input_range = _input_range((0.0, 1.0) if input_range is None else input_range)
        self._key = (kind, structure, _freeze(output), _signature(params), self.input_shape,
                     self.input_range)
        self._hash = hash(self._key)  # jit hashes static arguments on every call
        self._shape_cache: dict = {}
        self._view: Probe | None = None

    @property
    def params(self):
        return self._params

    def __eq__(self, other):
        return self is other or (isinstance(other, Probe) and self._hash == other._hash
                                 and self._key == other._key)

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return (f"Probe({self.kind}, input_shape={self.input_shape}, "
                f"input_range={self.input_range})")

    @property
    def num_classes(self) -> int | None:
        if self.input_shape is None:
            return None
        out = self.output_shape((1, *self.input_shape))
        return int(out[-1]) if len(out) == 2 else None

    def __call__(self, params, x: jax.Array) -> jax.Array:
        return self.run(params, x)[0]

    def run(self, params, x: jax.Array, edits: Edits | None = None, on_call=None):
        edits = dict(edits or {})
        acts: dict[str, jax.Array] = {}
        out = self._run(params, x, edits, acts, on_call)
        unknown = sorted(set(edits) - set(acts))
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; known layers: {list(acts)}")
        return select_output(out, self.output), acts

    def layer_shapes(self, x_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """{layer name: activation shape} for inputs of x_shape, by tracing (no compute)."""
        key = tuple(x_shape)
        if key not in self._shape_cache:
            x = jax.ShapeDtypeStruct(key, jax.numpy.float32)
            order: list[str] = []
            out, acts = jax.eval_shape(
                lambda p, x: self.run(p, x, on_call=lambda n, m, a: order.append(n)),
                self.params, x)
            # eval_shape sorts dict keys; keep the call order, the order users think in.
            names = list(dict.fromkeys(order))
            self._shape_cache[key] = (out.shape, {k: _shape(acts[k]) for k in names})
        return self._shape_cache[key][1]

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.layer_shapes(x_shape)
        return self._shape_cache[tuple(x_shape)][0]

    def check_layer(self, layer: str, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The activation shape of `layer`, or a ValueError listing the known layers."""
        shapes = self.layer_shapes(x_shape)
        if layer not in shapes:
            raise ValueError(f"unknown layer {layer!r}; known layers: {list(shapes)}")
        return shapes[layer]


def _shape(v):
    return tuple(v.shape) if hasattr(v, "shape") else jax.tree.map(lambda a: tuple(a.shape), v)


def static_view(fn):
    """For a Probe: an equal, hash-equal Probe whose params are ShapeDtypeStructs (enough
    for layer_shapes and eval_shape), to pass as a jit static argument so that compiled
    caches hold no weights. Any other callable is returned unchanged."""
    if not isinstance(fn, Probe):
        return fn
    if fn._view is None:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jax.numpy.shape(a), _dtype(a)),
                                fn.params)
        view = Probe(fn._run, abstract, kind=fn.kind, structure=fn._key[1], output=fn.output,
                     input_shape=fn.input_shape,
                     input_range=fn.input_range if fn.range_declared else None)
        view._shape_cache = fn._shape_cache  # shapes only: sharing them saves retracing
        view._view = view
        fn._view = view
    return fn._view


def _dtype(a):
    return a.dtype if hasattr(a, "dtype") else jax.numpy.result_type(a)


def _signature(params):
    """Parameter tree structure, shapes and dtypes: what compiled code depends on."""
    leaves, tree = jax.tree.flatten(params)
    return tree, tuple((tuple(jax.numpy.shape(a)), str(_dtype(a))) for a in leaves)


def _freeze(v):
    """A hashable stand-in for model options (dicts and lists by value, the rest as is)."""
    if isinstance(v, Mapping):
        return ("dict",) + tuple(sorted(((k, _freeze(x)) for k, x in v.items()), key=repr))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(_freeze(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return ("id", id(v))  # unhashable and unknown: equal only to itself
    return v


def check_spec(input_shape, input_range) -> tuple[tuple[int, int, int], tuple[float, float]]:
    """Validated (input_shape, input_range), or a ValueError naming the bad one."""
    return _input_shape(input_shape), _input_range(input_range)


def _input_shape(shape):
    if shape is None:
        return None
    try:
        shape = tuple(shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int)
                                                or s < 1 for s in shape)):
        raise ValueError(f"input_shape must be one image's (H, W, C) as positive ints; "
                         f"got {shape!r}")
    return shape


def _input_range(input_range):
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be a pair (lo, hi); got {input_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"input_range must be finite with lo < hi; got {input_range!r}")
    return lo, hi


def select_output(out, output):
    """Pick the logits out of a model's output; a tuple/dict needs an explicit selector."""
    if output is None:
        if isinstance(out, (tuple, list, dict)):
            raise ValueError(
                f"the model returns a {type(out).__name__}; say which output to explain "
                f"with from_model(..., output=KEY_OR_INDEX_OR_CALLABLE)")
        return out
    return output(out) if callable(output) else out[output]


def from_model(model, variables=None, *, output=None, apply_kwargs: Mapping | None = None,
               method=None, input_shape=None, input_range=None) -> Probe:
    """Wrap an `nnx.Module`, or a `linen.Module` with its `variables`, as a Probe.

    output: selects the logits when the model returns a tuple or dict (index, key or callable).
    apply_kwargs: extra keyword arguments for every call; the mode flags the model's
      `__call__` (or `method`) takes are added in their inference values unless named here.
    input_shape: one image's (H, W, C); default: the model's `input_shape` attribute if it
      has one, else unknown (analyses that need it then ask for it).
    input_range: (lo, hi) of valid pixel values (activation maximization stays inside it);
      given, it is declared: analyses refuse float images outside it and map uint8 onto it;
      default: (0, 1) assumed, images not checked against it.
    """
    if isinstance(model, Probe):
        return model
    spec = dict(output=output, input_range=input_range,
                input_shape=getattr(model, "input_shape", None) if input_shape is None
                else input_shape)
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise ValueError("variables: an nnx.Module carries its own state; pass only the model")
        return _nnx_probe(model, _inference_kwargs(model, None, apply_kwargs), spec)
    if isinstance(model, nn.Module):
        if variables is None:
            raise ValueError("variables: a linen.Module needs its variables, e.g. "
                             "from_model(module, module.init(key, x))")
        return _linen_probe(model, variables, _inference_kwargs(model, method, apply_kwargs),
                            method, spec)
    raise TypeError(f"model must be a flax nnx.Module or linen.Module; got {type(model).__name__}")


def _inference_kwargs(model, method, apply_kwargs) -> dict:
    given = dict(apply_kwargs or {})
    if "mutable" in given:
        raise ValueError(f"apply_kwargs: jaxviz runs models in inference mode, where no "
                         f"variable changes; drop 'mutable' (got {given['mutable']!r})")
    return {**modes.mode_kwargs(modes.call_target(model, method), False, given), **given}


def _refuse_mutation(what: str, kwargs) -> ValueError:
    return ValueError(
        f"the model changes {what} when called in inference mode (with {kwargs}), so its "
        f"outputs would depend on the batch; give its __call__ a `train`, `training`, "
        f"`deterministic` or `use_running_average` argument that turns this off, or pass "
        f"apply_kwargs that do")


# Variables a model may change in inference mode without its outputs depending on the batch.
_UNWATCHED = nnx.Any(nnx.RngState, nnx.Intermediate)


def _values(state) -> dict:
    return {jax.tree_util.keystr(k): v
            for k, v in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))[0]}


def _nnx_probe(model: nnx.Module, apply_kwargs, spec) -> Probe:
    graphdef, state = nnx.split(model)

    def run(state, x, edits, acts, on_call):
        # A private copy (new Variables): the user's model keeps its mode and its values.
        m = nnx.merge(graphdef, state, copy=True)
        m.eval()
        before = _values(nnx.state(m, nnx.Not(_UNWATCHED)))
        names = {id(sub): ".".join(map(str, path)) for path, sub in nnx.iter_modules(m) if path}
        tapped: dict[type, type] = {}

        def tap_class(cls):
            if cls not in tapped:
                def __call__(self, *args, **kwargs):
                    name = names[id(self)]
                    with jax.named_scope(layer_scope(name)):
                        a = cls.__call__(self, *args, **kwargs)
                    if name in edits:
                        a = edits[name](a)
                    acts[name] = a
                    if on_call is not None:
                        on_call(name, self, a)
                    return a
                tapped[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
            return tapped[cls]

        for path, sub in nnx.iter_modules(m):
            if path:
                object.__setattr__(sub, "__class__", tap_class(type(sub)))
        try:
            out = m(x, **apply_kwargs)
        except flax_errors.ModifyScopeVariableError as err:  # a Linen model in nnx.bridge.ToNNX
            raise _refuse_mutation(_linen_variable(err), apply_kwargs) from None
        after = _values(nnx.state(m, nnx.Not(_UNWATCHED)))
        changed = [k for k, v in after.items() if before.get(k) is not v]
        if changed:
            raise _refuse_mutation(f"its variable {changed[0]}", apply_kwargs)
        return out

    return Probe(run, state, kind="nnx", structure=(graphdef, _freeze(apply_kwargs)), **spec)


def _linen_probe(module: nn.Module, variables, apply_kwargs, method, spec) -> Probe:
    def run(variables, x, edits, acts, on_call):
        def interceptor(next_fun, args, kwargs, context):
            path = context.module.path
            if context.method_name != "__call__" or not path:
                return next_fun(*args, **kwargs)
            name = ".".join(map(str, path))
            with jax.named_scope(layer_scope(name)):
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
                raise _refuse_mutation(_linen_variable(err), apply_kwargs) from None

    return Probe(run, variables, kind="linen",
                 structure=(_freeze(module), _freeze(method), _freeze(apply_kwargs)), **spec)


def _linen_variable(err) -> str:
    """'its variable "mean" in "/bn" (collection "batch_stats")' from Linen's error text."""
    found = re.search(r'variable "(.*?)" in "(.*?)" because collection "(.*?)"', str(err))
    if found is None:
        return "a variable"
    name, scope, collection = found.groups()
    return f'its variable "{name}" in "{scope}" (collection "{collection}")'


def layer_params(probe: Probe, params, layer: str) -> Mapping[str, Any]:
    """The parameter arrays that belong to `layer` ({"kernel": ..., "bias": ...})."""
    tree = nnx.to_pure_dict(params) if probe.kind == "nnx" else params.get("params", params)
    node = tree
    for part in layer.split("."):
        key = int(part) if isinstance(node, Mapping) and part.isdigit() and int(part) in node else part
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"layer {layer!r} has no parameters; layers with parameters: "
                             f"{_param_layers(tree)}")
        node = node[key]
    return node


def _param_layers(tree, prefix=()) -> list[str]:
    out = []
    for k, v in tree.items():
        if isinstance(v, Mapping):
            if any(not isinstance(x, Mapping) for x in v.values()):
                out.append(".".join(map(str, prefix + (k,))))
            out.extend(_param_layers(v, prefix + (k,)))
    return out
