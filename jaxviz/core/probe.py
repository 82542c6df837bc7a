"""The pure boundary every analysis uses: a model of any JAX library as functions of arrays.

    probe = jaxviz.core.probe.from_model(model)           # nnx / equinox / keras model
    probe = jaxviz.core.probe.from_model(module, variables)  # a linen.Module and its variables
    probe = jaxviz.core.probe.from_function(apply_fn, params)  # anything else
    logits = probe(probe.params, x)                  # apply_fn(params, x) -> logits
    logits, acts = probe.run(probe.params, x)        # acts: {"conv1": ..., "conv2": ...}
    logits, acts = probe.run(params, x, edits={"conv2": lambda a: a + delta})

`from_model` dispatches by type to one adapter per library (`jaxviz.core.adapters`: Flax
NNX and Linen, Equinox, Keras 3); what follows holds for all of them, and the adapter
modules say what each library adds (Equinox: channel-first convolutions behind NHWC
images and activations; Keras: layers by their Keras names).

Layers are the model's submodules, named by their attribute path joined with "."
("conv1", "block.conv", "layers.0"); a layer's activation is the output of its
`__call__`; the ops it traces run under the name scope `layer_scope(name)`, so a jaxpr
of the model says which layer each equation belongs to. `edits` replace a layer's output
while the model runs, which is how gradients at a layer are taken without editing the
model's code. The model always runs in inference mode, so dropout and batch-norm
statistics never depend on batching: NNX models get `eval()` on a private copy (Equinox
ones `inference_mode`, Keras ones `training=False`), and a `__call__` that takes `train`,
`training`, `deterministic` or `use_running_average` (NNX or Linen) gets its inference value without being asked (`jaxviz.core.modes`); a flag named in
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
from collections.abc import Callable, Mapping
from typing import Any

import jax

Edits = Mapping[str, Callable[[jax.Array], jax.Array]]


def layer_scope(name: str) -> str:
    """The `jax.named_scope` a layer's own ops are traced under ("jaxviz[conv1]")."""
    return f"jaxviz[{name}]"


class Probe:
    """A model as pure functions. Call it as `probe(params, x) -> logits` (an apply_fn).

    run(params, x, edits=None, on_call=None) -> (output, {layer name: activation}).
    `on_call(name, module, activation)` is called for each layer in call order while tracing;
    `module` is the library's layer object, or an `adapters.LayerView` of it where the
    library keeps a layer's arrays outside it (Equinox, Keras): `adapters.own_arrays(module)`
    reads them either way.
    params: the weights `from_model` found (read-only; analyses take params as an argument).
    input_shape: (H, W, C) or None (unknown); input_range: (lo, hi) of valid pixel values,
    (0, 1) when None is given; range_declared: whether it was given (analyses check images
    against a declared range only); num_classes: K of the (N, K) output for input_shape,
    or None.
    Equal (and hash-equal) to any Probe of the same structure, whatever its weights.
    """

    def __init__(self, run_fn, params, *, kind: str, structure, output=None,
                 input_shape=None, input_range=None, note: str | None = None):
        self._run = run_fn
        self._params = params
        self.kind = kind
        self.note = note
        self.output = output
        self.input_shape = _input_shape(input_shape)
        self.range_declared = input_range is not None
        self.input_range = _input_range((0.0, 1.0) if input_range is None else input_range)
        self._key = (kind, structure, freeze(output), _signature(params), self.input_shape,
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
        note = f", {self.note}" if self.note else ""
        return (f"Probe({self.kind}, input_shape={self.input_shape}, "
                f"input_range={self.input_range}{note})")

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
                     input_range=fn.input_range if fn.range_declared else None, note=fn.note)
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


def freeze(v):
    """A hashable stand-in for model options (dicts and lists by value, the rest as is)."""
    if isinstance(v, Mapping):
        return ("dict",) + tuple(sorted(((k, freeze(x)) for k, x in v.items()), key=repr))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(freeze(x) for x in v)
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
    """Wrap a model as a Probe, through the adapter of its library (`jaxviz.core.adapters`):
    an `nnx.Module`; a `linen.Module` with its `variables`; an `equinox.Module` (with its
    `eqx.nn.State` as `variables` when it has one); a Keras 3 `keras.Model` (JAX backend).
    Any other model: `from_function`.

    output: selects the logits when the model returns a tuple or dict (index, key or callable).
    apply_kwargs: extra keyword arguments for every call; the mode flags the model's
      `__call__` (or `method`) takes are added in their inference values unless named here.
    method: a Linen module's method to run (default `__call__`).
    input_shape: one image's (H, W, C); default: the model's own (its `input_shape`
      attribute, a Keras model's input), else unknown (analyses that need it then ask).
    input_range: (lo, hi) of valid pixel values (activation maximization stays inside it);
      given, it is declared: analyses refuse float images outside it and map uint8 onto it;
      default: (0, 1) assumed, images not checked against it.
    """
    if isinstance(model, Probe):
        return model
    from jaxviz.core import adapters  # noqa: PLC0415  (the adapters import this module)
    options = dict(output=output, apply_kwargs=apply_kwargs, method=method,
                   input_shape=input_shape, input_range=input_range)
    return adapters.for_model(model).build(model, variables, options)


def spec_of(model, options, default_shape=...) -> dict:
    """The Probe keywords for a model's input spec: output, input_range, and input_shape
    (given, else `default_shape` where an adapter reads it off the model, else the model's
    `input_shape` attribute)."""
    shape = options.get("input_shape")
    if shape is None:
        shape = getattr(model, "input_shape", None) if default_shape is ... else default_shape
    return dict(output=options.get("output"), input_range=options.get("input_range"),
                input_shape=shape)


def from_function(apply_fn: Callable, params, *, output=None, input_shape=None,
                  input_range=None, name: str | None = None) -> Probe:
    """A Probe over any function of (params, x), with named layers when it reports them.

    apply_fn(params, x) -> logits: no layers (gradient and perturbation methods only);
    apply_fn(params, x) -> (logits, {layer: activation}): layers to read, not to edit;
    apply_fn(params, x, tap) -> logits: `tap(name, a)` returns what the model uses as layer
      `name`'s output (recorded, and replaced by an edit), so every layer analysis works:

        def apply_fn(params, x, tap):
            h = tap("conv1", jax.nn.relu(conv(params["conv1"], x)))
            return tap("head", h.mean((1, 2)) @ params["head"]["kernel"])

        probe = from_function(apply_fn, params, input_shape=(28, 28, 1))

    A layer's ops inside `with jax.named_scope(layer_scope(name)):` tell LRP and DeepLIFT
    which layer each op belongs to. A layer's arrays are read from params["params"][layer]
    (or params[layer]) as {"kernel": (kh, kw, in, out), "bias": ...}, as filters expect.
    name: the Probe's kind in its repr (default "function").
    """
    from jaxviz.core.adapters import function  # noqa: PLC0415
    return function.build(apply_fn, params, dict(output=output, input_shape=input_shape,
                                                 input_range=input_range), name)


def layer_params(probe: Probe, params, layer: str) -> Mapping[str, Any]:
    """The parameter arrays that belong to `layer` ({"kernel": ..., "bias": ...}), named
    and laid out as the probe's adapter reports them (`adapters.param_tree`)."""
    from jaxviz.core import adapters  # noqa: PLC0415
    return adapters.layer_params(probe, params, layer)
