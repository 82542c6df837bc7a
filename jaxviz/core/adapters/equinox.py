"""Equinox: an `eqx.Module` whose `__call__` takes one channel-first image.

    probe = from_model(model)           # a stateless model
    probe = from_model(model, state)    # with its eqx.nn.State (eqx.nn.make_with_state)

Images stay NHWC in jaxviz, as everywhere: the adapter transposes x: (N, H, W, C) to the
model's (C, H, W) per image and vmaps the model over the batch; every 3-D per-image
activation (C, h, w) is reported (and edited) as (N, h, w, C), so CAMs and feature maps
read channels last. The Probe's repr says so.

Layers are the submodules, named by attribute path ("conv1", "layers.3", "blocks.0.conv").
The model runs in `eqx.nn.inference_mode` (dropout off, BatchNorm on its running
statistics from the State), a `__call__` taking `inference`, `train`, `training` or
`deterministic` gets its inference value, and one that requires a `key` gets key=None. Each layer's ops run under `layer_scope(name)`
(a per-class subclass swapped in on a private copy of the model); an edit at a layer sees
the whole batch (the per-image values gathered across the vmapped axis).

params: {"params": {layer path: {name: array}}, "batch_stats": {...}, "state": {...}} with
jaxviz's standard names and layouts (module `jaxviz.core.adapters`): a Conv's weight
(O, I, kh, kw) is "kernel" (kh, kw, I, O) and its bias (O,); a Linear's weight is
"kernel" (in, out); a norm layer's weight is "scale"; a BatchNorm's running mean and
variance are batch_stats "mean" / "var"; other State entries sit under "state". The
adapter lays them back into the model's own shapes on every call (inside each layer's
scope), so weights copied from a Flax model of the same layout give the same logits.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import sys

import jax
import jax.numpy as jnp

from jaxviz.core import adapters, modes
from jaxviz.core import probe as probe_lib

_AXIS = "jaxviz_batch"  # the vmapped batch axis, for gathering an edited layer's batch
# Mode flags an Equinox __call__ may take: {name: its value in training mode}.
_FLAGS = {"inference": False, **modes.FLAGS}
NOTE = "images NHWC, run channel-first (C, H, W) per image; 3-D activations shown NHWC"


def _eqx():
    import equinox  # noqa: PLC0415
    return equinox


def _claims(model) -> bool:
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(model, eqx.Module)


def _children(module):
    """(name, value) of a module's dataclass fields, lists/tuples/dicts opened."""
    for f in dataclasses.fields(module):
        if f.metadata.get("static", False):
            continue
        yield from _open(f.name, getattr(module, f.name, None))


def _open(name, v):
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            yield from _open(f"{name}.{i}", x)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from _open(f"{name}.{k}", x)
    else:
        yield name, v


def _modules(model) -> list[tuple[str, object]]:
    """[(path, module)] of every submodule, depth first, the root as ""."""
    eqx = _eqx()
    out = [("", model)]
    for name, v in _children(model):
        # A StateIndex is a Module too, but a key into the State, not a layer.
        if isinstance(v, eqx.Module) and not isinstance(v, eqx.nn.StateIndex):
            out.extend((f"{name}.{p}" if p else name, m) for p, m in _modules(v))
    return out


def _key_name(k) -> str:
    for attr in ("name", "idx", "key"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _standard(module, field: str, eqx):
    """(standard name, to_standard, from_standard(a, native_shape)) for a module's array."""
    keep = (field, lambda a: a, lambda a, shape: a)
    if isinstance(module, eqx.nn.Conv) and not isinstance(module, eqx.nn.ConvTranspose):
        if field == "weight":  # (O, I, *k) <-> (*k, I, O)
            return ("kernel", lambda a: jnp.transpose(a, (*range(2, a.ndim), 1, 0)),
                    lambda a, shape: jnp.transpose(a, (a.ndim - 1, a.ndim - 2,
                                                       *range(a.ndim - 2))))
        if field == "bias":  # (O, 1, 1) <-> (O,)
            return "bias", lambda a: a.reshape(-1), lambda a, shape: a.reshape(shape)
    if isinstance(module, eqx.nn.Linear) and field == "weight" and module.weight.ndim == 2:
        return "kernel", lambda a: a.T, lambda a, shape: a.T
    norms = tuple(getattr(eqx.nn, n) for n in ("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm")
                  if hasattr(eqx.nn, n))
    if isinstance(module, norms) and field == "weight":
        return "scale", lambda a: a, lambda a, shape: a
    return keep


def _put(tree: dict, path: str, name: str, value) -> None:
    node = tree
    for part in (path.split(".") if path else []):
        node = node.setdefault(part, {})
    node[name] = value


def _get(tree, path: str, name: str):
    return _node(tree, path)[name]


class _Layout:
    """Where each array of the model sits in the standard params, both ways."""

    def __init__(self, model, state):
        eqx = _eqx()
        dynamic, self.static = eqx.partition(model, eqx.is_array)
        flat, self.treedef = jax.tree_util.tree_flatten_with_path(dynamic)
        mods = dict(_modules(model))
        self.leaves = []  # (owner path, standard name, to, from, native shape)
        for keypath, leaf in flat:
            parts = [_key_name(k) for k in keypath]
            cut = max(i for i in range(len(parts)) if ".".join(parts[:i]) in mods)
            owner = ".".join(parts[:cut])
            std, to, back = _standard(mods[owner], "_".join(parts[cut:]), eqx)
            self.leaves.append((owner, std, to, back, leaf.shape))
        self.stateful = []  # (owner path, field, StateIndex, collection)
        for owner, m in mods.items():
            for f in dataclasses.fields(m):
                idx = getattr(m, f.name, None)
                if isinstance(idx, eqx.nn.StateIndex):
                    bn = isinstance(m, eqx.nn.BatchNorm) and f.name == "ema_state_index"
                    self.stateful.append((owner, f.name, idx, "batch_stats" if bn else "state"))
        if self.stateful and state is None:
            raise ValueError(f"variables: this {type(model).__name__} holds state (at "
                             f"{self.stateful[0][0] or 'the model'}); pass its eqx.nn.State: "
                             f"from_model(model, state), state from eqx.nn.make_with_state")
        self.epsilon = {p: getattr(m, "eps") for p, m in mods.items() if hasattr(m, "eps")}

    def standard(self, model, state) -> dict:
        eqx = _eqx()
        out: dict = {}
        dynamic = eqx.filter(model, eqx.is_array)
        for (owner, std, to, _, _), a in zip(self.leaves, jax.tree.leaves(dynamic)):
            _put(out.setdefault("params", {}), owner, std, to(a))
        for owner, field, idx, collection in self.stateful:
            value = state.get(idx)
            if collection == "batch_stats":
                _put(out.setdefault(collection, {}), owner, "mean", value[0])
                _put(out[collection], owner, "var", value[1])
            else:
                _put(out.setdefault(collection, {}), owner, field, value)
        return out

    def native(self, params, state):
        """(model, state) with the arrays of `params` in the model's own shapes."""
        eqx = _eqx()
        leaves = []
        for owner, std, _, back, shape in self.leaves:
            with jax.named_scope(probe_lib.layer_scope(owner) if owner else "jaxviz"):
                leaves.append(back(_get(params["params"], owner, std), shape))
        model = eqx.combine(jax.tree.unflatten(self.treedef, leaves), self.static)
        state = _clone(state)  # State.set retires the State it is called on: never the user's
        for owner, field, idx, collection in self.stateful:
            if collection == "batch_stats":
                value = (_get(params[collection], owner, "mean"),
                         _get(params[collection], owner, "var"))
            else:
                value = _get(params[collection], owner, field)
            state = state.set(idx, value)
        return model, state

    def arrays(self, params, owner: str) -> dict:
        out = {}
        for collection in ("params", "batch_stats"):
            try:
                node = _node(params.get(collection, {}), owner)
            except KeyError:
                continue
            out.update({k: v for k, v in node.items() if not isinstance(v, dict)})
        return out


def _clone(state):
    if state is None:
        return None
    leaves, tree = jax.tree.flatten(state)
    return jax.tree.unflatten(tree, leaves)


def _node(tree, path: str):
    node = tree
    for part in (path.split(".") if path else []):
        node = node[part]
    return node


def _split_state(out, eqx):
    """A stateful layer returns (activation, State): (activation, State); else (out, None)."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], eqx.nn.State):
        return out
    return out, None


def _nhwc(a):
    return jnp.moveaxis(a, 1, -1) if getattr(a, "ndim", 0) == 4 else a


def _nchw(a):
    return jnp.moveaxis(a, -1, 1) if getattr(a, "ndim", 0) == 4 else a


def _batch_edit(edit, a):
    """Apply `edit` (a function of the whole batch, NHWC) to one image's activation `a`
    inside the vmap: gather the batch, edit it, take this image's slice back."""
    full = jax.lax.all_gather(a, _AXIS)
    return _nchw(edit(_nhwc(full)))[jax.lax.axis_index(_AXIS)]


def _channels_last_conv(self, x, *, key=None):
    """`eqx.nn.Conv.__call__` with the same values, computed channels-last.

    Equinox convolves one (C, *spatial) image as (1, C, *spatial) and adds its (O, 1, ...)
    bias after a squeeze. Under jaxviz's vmaps (the batch, then IG's steps or occlusion's
    positions), XLA CPU keeps such channel-first convolutions and their activations in
    channel-first memory, with a physical transpose around every layer (IG ~4x, occlusion
    ~14x slower than the same model in Flax). Here the convolution itself is
    channels-last, with its bias added right after it (as Flax writes a conv layer, which
    is also what LRP's canonizer folds), and the result is moved back to (O, *spatial);
    the transposes between layers then cancel."""
    del key
    n = self.num_spatial_dims
    if x.ndim != n + 1:
        raise ValueError(f"Input to `Conv` needs to have rank {n + 1}, but input has shape "
                         f"{x.shape}.")
    if self.padding_mode != "ZEROS":
        x, padding = self._nonzero_pad(x), "VALID"
    else:
        padding = self.padding
    spatial = "DHW"[3 - n:] if n <= 3 else "".join(chr(ord("a") + i) for i in range(n))
    lhs = _one(jnp.moveaxis(x, 0, -1))
    rhs = jnp.transpose(self.weight, (*range(2, n + 2), 1, 0))  # (O, I, *k) -> (*k, I, O)
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                        (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    y = jax.lax.conv_general_dilated(lhs, rhs, window_strides=self.stride, padding=padding,
                                     rhs_dilation=self.dilation,
                                     feature_group_count=self.groups, dimension_numbers=dn)
    if self.use_bias:
        y = y + self.bias.reshape(-1)
    return jnp.moveaxis(y.reshape(y.shape[1:]), -1, 0)


def _channels_last_pool(self, x):
    """`eqx.nn.Pool.__call__` (max and average pools), with reshapes for its expand_dims
    and squeeze: the same values, and incremental occlusion keeps its box through it
    (its rules have no squeeze)."""
    n = self.num_spatial_dims
    if x.ndim != n + 1:
        raise ValueError(f"Input should have {n} spatial dimensions, but input has shape "
                         f"{x.shape}")
    padding = self._update_padding_for_ceil(x.shape) if self.use_ceil else self.padding
    self._check_is_padding_valid(padding)
    y = jax.lax.reduce_window(_one(jnp.moveaxis(x, 0, -1)), self.init, self.operation,
                              (1,) + self.kernel_size + (1,), (1,) + self.stride + (1,),
                              ((0, 0),) + tuple(padding) + ((0, 0),))
    return jnp.moveaxis(y.reshape(y.shape[1:]), -1, 0)


def _one(a):
    """a with a leading batch axis of 1, by a reshape (see `_channels_last_pool`)."""
    return a.reshape((1,) + a.shape)


def _own_call(cls, eqx):
    """The __call__ a tapped layer runs: jaxviz's form of eqx.nn.Conv and the eqx.nn pools
    where the class uses Equinox's own (same values), else the class's."""
    own = {eqx.nn.Conv.__call__: _channels_last_conv, eqx.nn.Pool.__call__: _pool_call,
           eqx.nn.Linear.__call__: _linear_call}
    for n in (1, 2, 3):
        own[getattr(eqx.nn, f"MaxPool{n}d").__call__] = _pool_call
        own[getattr(eqx.nn, f"AvgPool{n}d").__call__] = _avg_pool_call
    return own.get(cls.__call__, cls.__call__)


def _linear_call(self, x, *, key=None):
    """`eqx.nn.Linear.__call__` as x @ W.T (Equinox: W @ x), the same sums: the input
    first, as incremental occlusion's dense-layer rule reads it (else every occluded
    position pays a full product)."""
    if self.in_features == "scalar" or self.out_features == "scalar":
        return _eqx().nn.Linear.__call__(self, x, key=key)
    y = x @ self.weight.T
    return y if self.bias is None else y + self.bias


def _pool_call(self, x, *, key=None):
    return _channels_last_pool(self, x)


def _avg_pool_call(self, x, *, key=None):
    return _channels_last_pool(self, x) / math.prod(self.kernel_size)


def _tapper(names, edits, record, eqx):
    tapped: dict[type, type] = {}

    def tap_class(cls):
        if cls not in tapped:
            call = _own_call(cls, eqx)

            def __call__(self, *args, **kwargs):
                name = names[id(self)]
                with jax.named_scope(probe_lib.layer_scope(name)):
                    a, state = _split_state(call(self, *args, **kwargs), eqx)
                    if name in edits:
                        a = _batch_edit(edits[name], a)
                record[name] = a
                return a if state is None else (a, state)
            tapped[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
        return tapped[cls]
    return tap_class


def _needs_key(fn) -> bool:
    """Whether `fn` takes a `key` argument without a default (Equinox's PRNG convention)."""
    try:
        p = inspect.signature(fn).parameters.get("key")
    except (TypeError, ValueError):
        return False
    return p is not None and p.default is inspect.Parameter.empty


def build(model, variables, options) -> probe_lib.Probe:
    eqx = _eqx()
    if options.get("method") is not None:
        raise ValueError("method: only for Linen modules; an equinox.Module runs its __call__")
    if variables is not None and not isinstance(variables, eqx.nn.State):
        raise ValueError(f"variables: for an equinox.Module, its eqx.nn.State (or None); "
                         f"got {type(variables).__name__}")
    model = eqx.nn.inference_mode(model, True)
    layout = _Layout(model, variables)
    apply_kwargs = modes.inference_kwargs(type(model).__call__, options.get("apply_kwargs"),
                                          _FLAGS)
    if _needs_key(type(model).__call__) and "key" not in apply_kwargs:
        apply_kwargs["key"] = None  # inference draws nothing (Dropout is off)
    state0 = _clone(variables)

    def run(params, x, edits, acts, on_call):
        m, state = layout.native(params, state0)
        mods = _modules(m)
        names = {id(sub): path for path, sub in mods if path}
        order: list[str] = []
        record: dict = {}
        tap_class = _tapper(names, edits, record, eqx)
        for path, sub in mods:
            if path:
                object.__setattr__(sub, "__class__", tap_class(type(sub)))

        def one(xi, st):
            record.clear()
            out = m(xi, st, **apply_kwargs) if st is not None else m(xi, **apply_kwargs)
            if st is not None:
                out = _split_state(out, eqx)[0]
            order[:] = list(record)
            return out, dict(record)

        xc = jnp.moveaxis(x, -1, 1) if x.ndim == 4 else x
        if xc.shape[0] == 1 and not edits:
            # One image (occlusion's passes, vmapped by the caller): no vmap of size 1, whose
            # unit axes keep XLA CPU from laying channel-first convs out channels-last.
            out, per_layer = jax.tree.map(_one, one(xc.reshape(xc.shape[1:]), state))
        else:
            out, per_layer = jax.vmap(one, in_axes=(0, None), axis_name=_AXIS)(xc, state)
        views = {path: sub for path, sub in mods}
        for name in order:
            with jax.named_scope(probe_lib.layer_scope(name)):
                acts[name] = _nhwc(per_layer[name])
            if on_call is not None:
                on_call(name, adapters.layer_view(views[name], layout.arrays(params, name),
                                                  layout.epsilon.get(name)), acts[name])
        return out

    static_leaves = tuple(probe_lib.freeze(v) for v in jax.tree.leaves(layout.static))
    structure = ("equinox", jax.tree.structure(layout.static), static_leaves,
                 probe_lib.freeze(apply_kwargs), variables is not None)
    return probe_lib.Probe(run, layout.standard(model, variables), kind="equinox",
                           structure=structure, note=NOTE, **probe_lib.spec_of(model, options))


ADAPTER = adapters.register(adapters.Adapter(
    name="equinox", accepts="an equinox.Module (with its eqx.nn.State if it has one)",
    claims=_claims, build=build, param_tree=lambda params: params.get("params", {})))
