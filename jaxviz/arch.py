"""What a model is: a Keras-like summary table and its data-flow graph, read off one trace.

    s = summary(probe, x[:1])        # s.rows, s.total_params, s.total_flops; print(s)
    g = graph(probe, x[:1])          # g.nodes, g.edges (the real data flow)

Nothing runs: the model is traced once with `jax.make_jaxpr`. Each equation belongs to the
layer whose name scope it was traced under (`probe.layer_scope`); each layer's output is
tagged by an identity marker so that layers without ops (dropout in eval mode) still appear.
FLOPs count convolutions and dot products only, a multiply-add as 2, for the input given
(pass one example to get per-example numbers). Edges are drawn wherever a value made by one
node is used by another; ops outside any layer (a residual `+`, a reshape, a pool) become
small nodes, and a shape-preserving op applied only to one layer's output (its activation)
is folded into that layer's node; a chain of ops merges into one small node until a
rank-reducing op (a global pool, a flatten) starts the next.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import math
import re

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxviz.core import interpret
from jaxviz.core import jax_compat as compat
from jaxviz.core import probe as probe_lib
from jaxviz.models import count_params

_LAYER_RE = re.compile(r"jaxviz\[([^\]]*)\]")
_POOL_NAMES = {"reduce_window_max": "max_pool", "reduce_window_sum": "sum_pool",
               "reduce_window": "pool"}


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    type: str
    output_shape: tuple
    params: int
    flops: int


@dataclasses.dataclass(frozen=True)
class Summary:
    """Rows in call order. A nested layer's params and FLOPs are included in its parent's."""
    rows: tuple[Row, ...]
    total_params: int
    total_flops: int
    outside_flops: int  # FLOPs of ops traced outside every layer
    input_shape: tuple
    output_shape: tuple

    def text(self) -> str:
        cells = [(f"{r.name} ({r.type})", str(r.output_shape), f"{r.params:,}", f"{r.flops:,}")
                 for r in self.rows]
        if self.outside_flops:
            cells.append(("(ops outside layers)", "", "0", f"{self.outside_flops:,}"))
        head = ("Layer (type)", "Output shape", "Param #", "FLOPs")
        widths = [max(len(c[i]) for c in [head, *cells]) + 3 for i in range(4)]
        fmt = lambda c: " " + "".join(  # noqa: E731
            s.ljust(w) if i < 2 else s.rjust(w) for i, (s, w) in enumerate(zip(c, widths)))
        rule = "_" * (sum(widths) + 2)
        lines = [rule, fmt(head), "=" * len(rule), *map(fmt, cells), "=" * len(rule),
                 f"Total params: {self.total_params:,}",
                 f"Forward FLOPs: {self.total_flops:,} ({self.total_flops / 1e6:.4g} MFLOP) "
                 f"for input {self.input_shape}; a multiply-add counts as 2",
                 f"Output shape: {self.output_shape}", rule]
        return "\n".join(lines)

    __str__ = text


@dataclasses.dataclass
class Node:
    """A box of the diagram: the model input, a layer, or ops traced outside any layer."""
    name: str
    kind: str  # "input" | "layer" | "op"
    type: str
    ops: list[str]  # op nodes: their ops; layer nodes: the folded activation ops
    in_shapes: list[tuple]
    out_shape: tuple
    params: int = 0
    flops: int = 0


@dataclasses.dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def predecessors(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]


@dataclasses.dataclass
class _Op:
    label: str
    layers: list[str]  # enclosing layer scopes, outermost first
    ins: list[int]
    outs: list[tuple[int, tuple]]
    flops: int


def summary(model, sample_input, params=None) -> Summary:
    """The summary table of a Probe, an nnx.Module, or a linen.Module with `params` (its variables).

    sample_input: an array or jax.ShapeDtypeStruct, e.g. (1, 28, 28, 1); only its shape is used.
    """
    return _analyze(model, sample_input, params)[0]


def graph(model, sample_input, params=None) -> Graph:
    """The data-flow graph: nodes in trace order, edges (producer, consumer) by name."""
    return _analyze(model, sample_input, params)[1]


def summary_and_graph(model, sample_input, params=None) -> tuple[Summary, Graph]:
    """Both, from one trace."""
    return _analyze(model, sample_input, params)


def as_probe(model, params=None, what: str = "model"):
    """(probe, params) from a Probe, an nnx.Module, or a linen.Module with its variables."""
    if isinstance(model, probe_lib.Probe):
        return model, model.params if params is None else params
    if isinstance(model, nnx.Module):
        p = probe_lib.from_model(model)
        return p, p.params if params is None else params
    if isinstance(model, nn.Module):
        return probe_lib.from_model(model, params), params
    try:  # any other library's model, through its adapter
        p = probe_lib.from_model(model)
    except TypeError as err:
        raise TypeError(f"{what}: layers are needed, so pass a jaxviz Probe or a model; {err}") \
            from None
    return p, p.params if params is None else params


def _analyze(model, sample_input, params):
    probe, params = as_probe(model, params)
    if not hasattr(sample_input, "shape"):
        raise ValueError(f"sample_input must be an array or jax.ShapeDtypeStruct; "
                         f"got {type(sample_input).__name__}")
    dtype = getattr(sample_input, "dtype", jnp.float32)
    x = jax.ShapeDtypeStruct(tuple(sample_input.shape),
                             dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32)
    names = list(probe.layer_shapes(x.shape))
    types: dict[str, str] = {}
    acts_shapes: dict[str, tuple] = {}

    def on_call(name, module, a):
        types.setdefault(name, type(module).__name__)
        acts_shapes[name] = probe_lib._shape(a)

    def fn(params, x):
        edits = {n: functools.partial(_mark, n) for n in names}
        return probe.run(params, x, edits=edits, on_call=on_call)[0]

    closed = jax.make_jaxpr(fn)(params, x)
    n_params = len(jax.tree.leaves(params))
    ops, x_ids, out_ids = _flatten(closed, n_params)
    total_params = count_params(params)

    rows = []
    for name in names:
        try:
            n_par = count_params(probe_lib.layer_params(probe, params, name))
        except ValueError:
            n_par = 0
        flops = sum(op.flops for op in ops if name in op.layers)
        rows.append(Row(name, types.get(name, "?"), acts_shapes.get(name), n_par, flops))
    total_flops = sum(op.flops for op in ops)
    outside = sum(op.flops for op in ops if not op.layers)
    out_shape = tuple(closed.out_avals[0].shape) if closed.out_avals else ()
    s = Summary(tuple(rows), total_params, total_flops, outside, x.shape, out_shape)
    g = _build_graph(ops, x_ids, out_ids, x.shape, {r.name: r for r in rows})
    return s, g


def _mark(name, a):
    # An identity equation under the layer's scope: marks the layer's output in the jaxpr.
    with jax.named_scope(probe_lib.layer_scope(name)):
        return jax.lax.optimization_barrier(a)


def _flatten(closed, n_params):
    """Every equation, calls inlined (`interpret`), as _Ops over integer value ids."""
    ops: list[_Op] = []
    counter = itertools.count()
    ids = [next(counter) for _ in closed.jaxpr.invars]

    def op(eqn, ins):
        outs = [(next(counter), tuple(v.aval.shape)) for v in eqn.outvars]
        ops.append(_Op(_label(eqn), _LAYER_RE.findall(str(eqn.source_info.name_stack)),
                       [i for i in ins if i is not None], outs, _eqn_flops(eqn)))
        return [i for i, _ in outs]

    def custom(eqn, ins):
        # A custom-derivative function with no layer inside (relu, gelu) stays one op named
        # after it; one that wraps layers is inlined so they appear.
        sub = interpret.body(eqn)
        inner = interpret.leaf_eqns(sub) if sub is not None else []
        if any(_LAYER_RE.search(str(e.source_info.name_stack)) for e in inner):
            return None
        return op(eqn, ins)

    rules = {name: custom for name, kind in interpret.CALLS.items() if kind == interpret.CUSTOM}
    # Literals and constants get no id: they are not data flow between nodes.
    outs = interpret.evaluate(closed, ids, rules, lift=lambda _: None, default=op,
                              custom="inline", remat="inline")
    return ops, set(ids[n_params:]), [i for i in outs if i is not None]


def _label(eqn) -> str:
    name = eqn.params.get("name")
    if isinstance(name, str):
        return name
    # custom_jvp/vjp (relu, gelu...): the wrapped name
    inner = compat.open_jaxpr(eqn.params.get("call_jaxpr"))
    if inner is not None and len(inner.eqns) == 1:
        name = inner.eqns[0].params.get("name")
        if isinstance(name, str):
            return name
    return _POOL_NAMES.get(eqn.primitive.name, eqn.primitive.name)


def _eqn_flops(eqn) -> int:
    prim = eqn.primitive.name
    if prim == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        return 2 * math.prod(eqn.outvars[0].aval.shape) * (math.prod(rhs) // out_features)
    if prim == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    subs = [_jaxpr_flops(j) for v in eqn.params.values() for j in _jaxprs(v)]
    if not subs:
        return 0
    if prim == "cond":
        return max(subs)
    return sum(subs) * (eqn.params.get("length", 1) if prim == "scan" else 1)


def _jaxprs(v):
    if isinstance(v, (tuple, list)):
        return [j for x in v for j in _jaxprs(x)]
    v = compat.open_jaxpr(v)
    return [] if v is None else [v]


def _jaxpr_flops(jaxpr) -> int:
    return sum(_eqn_flops(e) for e in jaxpr.eqns)


def _build_graph(ops, x_ids, out_ids, x_shape, rows) -> Graph:
    builder = _GraphBuilder(ops, x_ids, out_ids, x_shape, rows)
    for op in ops:
        builder.add(op)
    return builder.graph()


class _GraphBuilder:
    """Layer and op nodes from the flattened ops, and the value flows between them."""

    def __init__(self, ops, x_ids, out_ids, x_shape, rows):
        # A layer that calls other layers is a container: its own ops (a residual add inside
        # a block) become op nodes, and its output marker passes values through unchanged.
        self.rows = rows
        self.containers = {n for n in rows if any(m.startswith(n + ".") for m in rows)}
        self.nodes: dict[str, Node] = {"input": Node("input", "input", "Input", [], [],
                                                     tuple(x_shape))}
        self.producer = {i: "input" for i in x_ids}
        self.shapes = {i: tuple(x_shape) for i in x_ids}
        self.shapes.update((i, shape) for op in ops for i, shape in op.outs)
        self.uses = collections.Counter([i for op in ops for i in op.ins] + list(out_ids))
        self.last_out: dict[str, int] = {}
        self.alias: dict[str, str] = {}  # op nodes merged into another
        self.flows: list[tuple[str, str, int]] = []  # (producer, consumer, value) across nodes

    def find(self, name):
        while name in self.alias:
            name = self.alias[name]
        return name

    def attach(self, node, op, dep):
        self.flows.extend((self.producer[i], node.name, i) for i in dep)
        for i, shape in op.outs:
            self.producer[i] = node.name
            self.last_out[node.name] = i
            node.out_shape = shape
        node.flops += op.flops

    def add(self, op):
        dep = list(dict.fromkeys(i for i in op.ins if i in self.producer))
        if not dep:
            return  # computed from parameters and constants only
        for i in dep:
            self.producer[i] = self.find(self.producer[i])
        layer = next((n for n in reversed(op.layers) if n not in self.containers), None)
        if layer is None and op.layers and op.label == "optimization_barrier":
            self.producer.update((o, self.producer[i]) for (o, _), i in zip(op.outs, op.ins)
                                 if i in self.producer)
        elif layer is not None:
            if layer not in self.nodes:
                r = self.rows.get(layer)
                self.nodes[layer] = Node(layer, "layer", r.type if r else "?", [], [], (),
                                         r.params if r else 0)
            self.attach(self.nodes[layer], op, dep)
        else:
            self.add_op_node(op, dep)

    def add_op_node(self, op, dep):
        nodes, shapes = self.nodes, self.shapes
        srcs = list(dict.fromkeys(self.producer[i] for i in dep))
        src, shape = nodes[srcs[0]], op.outs[0][1] if op.outs else ()
        if (len(dep) == 1 and len(op.outs) == 1 and src.kind == "layer"
                and self.uses[dep[0]] == 1 and self.last_out.get(src.name) == dep[0]
                and shape == shapes[dep[0]]):
            src.ops.append(op.label)  # the layer's activation
            self.attach(src, op, [])
        elif len(srcs) == 1 and src.kind == "op" and len(shape) >= len(shapes[dep[0]]):
            # a rank-reducing op (global pool, flatten) starts a node of its own
            src.ops.append(op.label)
            self.attach(src, op, dep)
        elif len(srcs) > 1 and all(nodes[n].kind == "op" for n in srcs):
            for n in srcs[1:]:  # ops joining only op nodes (a softmax): one node
                self.alias[n] = src.name
                src.ops += nodes[n].ops
                src.flops += nodes[n].flops
            src.ops.append(op.label)
            self.attach(src, op, dep)
        else:
            name = _fresh(op.label, nodes, self.rows)
            nodes[name] = Node(name, "op", op.label, [op.label], [], ())
            self.attach(nodes[name], op, dep)

    def graph(self) -> Graph:
        edges, seen = {}, set()
        for a, b, i in self.flows:
            a, b = self.find(a), self.find(b)
            if a != b:
                edges[(a, b)] = None
                if (b, i) not in seen:
                    seen.add((b, i))
                    self.nodes[b].in_shapes.append(self.shapes[i])
        return Graph(tuple(n for n in self.nodes.values() if n.name not in self.alias),
                     tuple(edges))


def _fresh(label, nodes, rows) -> str:
    name, k = label, 1
    while name in nodes or name in rows:
        k += 1
        name = f"{label}_{k}"
    return name
