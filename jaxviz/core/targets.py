"""Targets: what an attribution method explains, as objectives (`jaxviz.core.objectives`).

    t = targets.resolve(fn, params, x, target)     # checked; an error names a bad index
    t.score(logits, acts)    # (N,) for one target, (N, T) for several
    t.classes                # (N,) int32 classes used, or None when not a class target
    t.needs_acts             # whether the score reads layer activations (a Probe's run)
    t.count, t.names         # T, and one name per target

target is one of:
- an int, or one class index per image (a list or an (N,) array): that class's logit;
- None: the predicted class of each image (argmax of the model's output);
- "all": every class, T = K; a list of objectives: T targets;
- an Objective: `class_logit(k)`, `class_prob(k)`, `margin(k)`, `channel(layer, c)`,
  `neuron(layer, c, y, x)`, `direction(layer, v)`, `region(mask)`, `custom(fn)` and sums
  and scales of these.

A Target is a pytree: its arrays (class indices, channels, directions) are leaves, its
form is static, so a jitted method compiles once per form. Several targets are one form
with stacked arguments where they share it (`objectives.batch`): `unit(u)` is the single
target of unit arguments u, which methods `vmap` over (`jaxviz.core.method`), so every
forward pass that does not depend on the target runs once for all of them.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core import objectives as obj
from jaxviz.core import probe as probe_lib

SCORES = analysis.SCORES
# What a target is made of, for support tables and refusals: one kind per objective node.
KINDS = ("class_logit", "class_prob", "margin", "channel", "neuron", "direction", "region",
         "custom")
LAYER_KINDS = ("channel", "neuron", "direction")


@jax.tree_util.register_pytree_node_class
class Target:
    """A resolved target (module docstring). Built by `resolve`, not by hand.

    node: the objective's static form; args: its arrays (stacked over T units when
    count > 1); shared: arguments common to every unit (mixed forms) or None;
    classes: (N,) int32 or None; source: "class" (indices given), "predicted" (None),
    "all", "objective", or "traced" (rebuilt inside a compiled program, where only the
    form is known); kinds: the objective kinds it is made of; layers: the layer
    names it reads (None: unknown, a custom objective)."""

    def __init__(self, node, args, shared=None, classes=None, *, count: int = 1,
                 names=("target",), needs_acts: bool = False, kinds=frozenset(),
                 layers=(), source: str = "objective", n: int = 0):
        self.node, self.args, self.shared, self.classes = node, args, shared, classes
        self.count, self.names, self.needs_acts = count, tuple(names), needs_acts
        self.kinds, self.layers, self.source, self.n = frozenset(kinds), layers, source, n

    def _aux(self):
        # What a compiled program depends on: the form, not the names or which class
        # indices were given (so class 3 and classes [0, 3] share one program).
        return (self.node, self.count, self.needs_acts, self.kinds, self.layers,
                self.source == "all", self.n)

    def tree_flatten(self):
        return (self.args, self.shared, self.classes), self._aux()

    @classmethod
    def tree_unflatten(cls, aux, children):
        node, count, needs_acts, kinds, layers, every, n = aux
        return cls(node, *children, count=count, names=("target",) * count,
                   needs_acts=needs_acts, kinds=kinds, layers=layers,
                   source="all" if every else "traced", n=n)

    @property
    def many(self) -> bool:
        """Several targets (T maps per image), even when T = 1 ("all" of a 1-class model)."""
        return self.source == "all" or self.count > 1 or isinstance(self.node, _Many)

    def score(self, logits, acts) -> jax.Array:
        """(N,) for one target, (N, T) for several. acts: {layer: activation} ({} when
        not needs_acts)."""
        if not self.many:
            return self.node(self.args, logits, acts)
        return jax.vmap(lambda u: obj.evaluate(self.node.inner, u, self.shared, logits, acts),
                        out_axes=-1)(self.args)

    def unit(self, u) -> "Target":
        """The single target of unit u's arguments (a slice of `args` along T)."""
        if not self.many:
            return self
        classes = jnp.broadcast_to(u, (self.n,)).astype(jnp.int32) if self.source == "all" \
            else None
        return Target(_Unit(self.node.inner), (u, self.shared), None, classes,
                      names=("unit",), needs_acts=self.needs_acts, kinds=self.kinds,
                      layers=self.layers, source="unit", n=self.n)

    def __repr__(self):
        shown = ", ".join(self.names[:4]) + (", ..." if self.count > 4 else "")
        return f"Target({shown})"


class _Many:
    """Marks a node as T stacked units (its `inner` node is evaluated per unit)."""

    def __init__(self, inner):
        self.inner = inner

    def __eq__(self, other):
        return isinstance(other, _Many) and other.inner == self.inner

    def __hash__(self):
        return hash(("many", self.inner))


class _Unit:
    """One unit of a stacked target: args (unit args, shared)."""

    def __init__(self, inner):
        self.inner = inner

    def __eq__(self, other):
        return isinstance(other, _Unit) and other.inner == self.inner

    def __hash__(self):
        return hash(("unit", self.inner))

    def __call__(self, args, logits, acts):
        return obj.evaluate(self.inner, args[0], args[1], logits, acts)


# ---- what an objective is made of ------------------------------------------------------

def node_kinds(node) -> frozenset:
    """The KINDS an objective node is made of."""
    if isinstance(node, (_Many, _Unit)):
        return node_kinds(node.inner)
    if isinstance(node, obj._Logit):
        return frozenset({"class_prob" if node.prob else "class_logit"})
    simple = {obj._Margin: "margin", obj._Channel: "channel", obj._Neuron: "neuron",
              obj._Direction: "direction", obj._Region: "region", obj._Custom: "custom"}
    if type(node) in simple:
        return frozenset({simple[type(node)]})
    return frozenset().union(*(node_kinds(c) for c in _children(node)))


def node_layers(node):
    """The layer names a node reads, in no order; None when unknown (a custom objective)."""
    if isinstance(node, obj._Custom):
        return None
    if isinstance(node, (obj._Channel, obj._Neuron, obj._Direction)):
        return (node.layer,)
    found = []
    for child in _children(node):
        sub = node_layers(child)
        if sub is None:
            return None
        found += [s for s in sub if s not in found]
    return tuple(found)


def _children(node):
    if isinstance(node, obj._Sum):
        return (node.a, node.b)
    if isinstance(node, obj._Scale):
        return (node.inner,)
    if isinstance(node, obj._Switch):
        return node.nodes
    if isinstance(node, (_Many, _Unit)):
        return (node.inner,)
    return ()


# ---- resolve ---------------------------------------------------------------------------

def resolve(fn, params, x, target, *, score: str = "logit", name: str = "target") -> Target:
    """`target` (module docstring) for images x (N, H, W, C) checked against fn: class
    indices in range, layers known, channels and positions in range, a custom objective
    returning (N,). A Target is returned as it is.

    score: how class-index targets (int, per image, None, "all") are scored: "logit",
    "prob" or "log_prob" (the perturbation methods' option); an objective is scored as
    itself."""
    if isinstance(target, Target):
        return target
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}; got {score!r}")
    n = int(x.shape[0])
    node = obj._Logit(score != "logit", score == "log_prob")
    label = {"logit": "class", "prob": "prob", "log_prob": "log prob"}[score]
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"{name} must be an int, one class per image, None (the "
                             f"predicted class), 'all', or an objective; got {target!r}")
        k = _classes_of(fn, params, x, name)
        return Target(_Many(node), np.arange(k, dtype=np.int32), count=k,
                      names=tuple(f"{label} {i}" for i in range(k)),
                      kinds={"class_prob" if node.prob else "class_logit"}, source="all",
                      n=n)
    if target is None:
        _classes_of(fn, params, x, name)
        classes = predicted(fn, params, x)
        return Target(node, classes, None, classes, names=(f"predicted {label}",),
                      kinds=node_kinds(node), source="predicted", n=n)
    if isinstance(target, obj.Objective):
        return _objective(fn, params, x, target, name)
    if isinstance(target, (list, tuple)) and target and all(
            isinstance(o, obj.Objective) for o in target):
        return _objectives(fn, params, x, list(target), name)
    if isinstance(target, (list, tuple)) and any(isinstance(o, obj.Objective) for o in target):
        raise ValueError(f"{name}: a list must be all class indices (one per image) or all "
                         f"objectives; got {[type(o).__name__ for o in target]}")
    if callable(target) and not hasattr(target, "shape"):
        raise ValueError(f"{name}: a function target must be wrapped as an objective, "
                         f"objectives.custom(fn); got {type(target).__name__}")
    classes = checks.as_targets(target, n, _classes_of(fn, params, x, name), name)
    one = np.ndim(target) == 0 and not checks.is_traced(target)
    return Target(node, classes, None, classes,
                  names=(f"{label} {int(target)}" if one else f"{label} per image",),
                  kinds=node_kinds(node), source="class", n=n)


def _classes_of(fn, params, x, name) -> int:
    shape = analysis.output_shape(fn, params, x.shape)
    if len(shape) != 2:
        raise ValueError(f"{name}: class targets need (N, K) model outputs; the model's "
                         f"output is {shape} (a dense output takes objectives.region(mask))")
    return int(shape[1])


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("fn",))
def _argmax(fn, params, x):
    return jnp.argmax(fn(params, x), axis=-1).astype(jnp.int32)


def predicted(fn, params, x) -> jax.Array:
    """(N,) int32: the class each image is predicted as."""
    return _argmax(analysis.static_fn(fn), params, x)


def _shapes(fn, params, x, node, what: str):
    """(output shape, layer shapes) for checking an objective; layers need a Probe."""
    out = analysis.output_shape(fn, params, x.shape)
    layers = node_layers(node)
    if not isinstance(fn, probe_lib.Probe):
        if layers:
            raise ValueError(f"{what} reads layer(s) {list(layers)}: pass a "
                             f"jaxviz.core.probe.Probe (jaxviz.core.probe.from_model(model)) "
                             f"as fn; got {type(fn).__name__}")
        return out, {}
    return out, fn.layer_shapes(tuple(x.shape))


def _needs_acts(fn, node) -> bool:
    layers = node_layers(node)
    return isinstance(fn, probe_lib.Probe) and (layers is None or bool(layers))


def _objective(fn, params, x, o: obj.Objective, name: str) -> Target:
    out, shapes = _shapes(fn, params, x, o.node, f"{name} {o.name}")
    _check(o.node, o.args, out, shapes, o.name, name)
    t = Target(o.node, o.args, names=(o.name,), needs_acts=_needs_acts(fn, o.node),
               kinds=node_kinds(o.node), layers=node_layers(o.node), n=int(x.shape[0]))
    _check_value(fn, params, x, t, name)
    return t


def _objectives(fn, params, x, objs, name: str) -> Target:
    nodes = [o.node for o in objs]
    for o in objs:
        out, shapes = _shapes(fn, params, x, o.node, f"{name} {o.name}")
        _check(o.node, o.args, out, shapes, o.name, name)
    node, units, shared = obj.batch(objs)
    layers = [node_layers(n) for n in nodes]
    t = Target(_Many(node), units, shared, count=len(objs), names=[o.name for o in objs],
               needs_acts=any(_needs_acts(fn, n) for n in nodes),
               kinds=frozenset().union(*(node_kinds(n) for n in nodes)),
               layers=None if None in layers else tuple(dict.fromkeys(sum(layers, ()))),
               n=int(x.shape[0]))
    _check_value(fn, params, x, t, name)
    return t


def _check(node, args, out_shape, shapes, oname: str, name: str) -> None:
    check = getattr(node, "check", None)
    if check is None:
        return
    try:
        check(args, tuple(out_shape), shapes)
    except ValueError as err:
        raise ValueError(f"{name} {oname}: {err}") from None


def _check_value(fn, params, x, t: Target, name: str) -> None:
    """The objective's value has the promised shape ((N,) or (N, T)), by tracing only."""
    want = (x.shape[0],) if not t.many else (x.shape[0], t.count)
    try:
        got = jax.eval_shape(lambda p, x: score_fn(fn, t, fast=False)(p, x), params,
                             jax.ShapeDtypeStruct(x.shape, jnp.float32)).shape
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise ValueError(f"{name} {', '.join(t.names)}: the objective fails on this model's "
                         f"outputs ({type(err).__name__}: {err})") from err
    if tuple(got) != want:
        raise ValueError(f"{name} {', '.join(t.names)}: the objective must give one value per "
                         f"image, shape {want}; got shape {tuple(got)}")


# ---- scoring ---------------------------------------------------------------------------

def outputs(fn, params, x, t: Target, *, fast: bool = True, edits=None):
    """(output, acts) of fn on x: acts are the layer activations when t reads them
    ({} otherwise, and fn called as an apply_fn). fast: through `compile.fast_model`."""
    if t.needs_acts or edits:
        def run(p, x):
            return fn.run(p, x, edits=edits)
    else:
        def run(p, x):
            return fn(p, x), {}
    return (compile_lib.fast_model(run) if fast else run)(params, x)


def score_fn(fn, t: Target, *, fast: bool = True):
    """f(params, x) -> t's scores, (N,) or (N, T): the function a method explains.
    fast: through `compile.fast_model` (the compile policy), for gradients."""
    def f(params, x):
        logits, acts = outputs(fn, params, x, t, fast=fast)
        return t.score(logits, acts)
    return f


def check_kinds(t: Target, allowed, method: str, reasons=None) -> None:
    """Refuse a target made of kinds `method` does not take, naming both (and why)."""
    bad = sorted(t.kinds - set(allowed))
    if bad:
        why = "; ".join(f"{k}: {(reasons or {}).get(k, 'not defined for this method')}"
                        for k in bad)
        raise ValueError(f"{method} cannot explain the target {', '.join(t.names)} ({why}); "
                         f"it takes {', '.join(k for k in KINDS if k in allowed)}")


def check_above(t: Target, probe, x_shape, layer: str, method: str) -> None:
    """A method that explains the target through `layer` (a CAM) needs a target computed
    from that layer or after it: an objective reading an earlier layer has gradient zero
    there. Refused naming the method, the target and both layers. A custom objective's
    layers are unknown and pass."""
    if not t.layers:
        return
    order = list(probe.layer_shapes(tuple(x_shape)))
    at = order.index(layer)
    before = [name for name in t.layers if name in order and order.index(name) < at]
    if before:
        raise ValueError(f"{method} explains the target through layer {layer!r}; the target "
                         f"{', '.join(t.names)} reads layer(s) {before}, computed before "
                         f"{layer!r}, so it does not depend on {layer!r}: pass a layer= at or "
                         f"before {before[0]!r}, or a target above {layer!r}")
