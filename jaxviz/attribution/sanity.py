"""Model-randomization sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Re-initialise the model's layers cumulatively from the top (output layer first) and measure,
after each step, how similar each method's maps stay to the trained model's maps (Spearman
rank correlation per image, averaged). A method that explains the model should lose that
similarity; one that stays high is mostly reacting to the input (an edge detector).
Any registered method can be checked; measurements on the reference CNN and on BatchNorm
nets (NNX and Linen) are in docs/sanity.md.

What a randomised layer is (`randomize_layers`), the same for NNX and Linen:
  parameters (NNX `nnx.Param`, Linen collection "params"), float ones only:
    named "scale" (the scale of Flax's BatchNorm, LayerNorm, GroupNorm, RMSNorm):
        |normal| noise of the leaf's own root mean square, so the scale stays positive
        and of its size (a fresh all-ones scale becomes |N(0, 1)|);
    every other (kernels, biases, embeddings): normal noise of the leaf's own std
        (zero-std leaves, e.g. fresh all-zero biases, stay as they are);
  BatchNorm running statistics (NNX `nnx.BatchStat`, Linen collection "batch_stats"):
    "mean" reset to 0 and "var" to 1, BatchNorm's own initial values (noise could make a
    variance negative: NaN); other statistics stay as they are;
  everything else (RNG keys and counters, intermediates, other collections) stays.
Each leaf belongs to the deepest called layer whose path holds it. The default cascade
(`cascade_layers`) visits each such owner once, top first, so every step randomises
parameters no earlier step did; a block that only holds layers is not a step of its own.
A NaN is never read as a correlation: `rank_correlation` gives NaN for a map with NaN/inf,
and the cascade keeps that NaN in its result and warns, naming method, layer and images.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxviz.attribution import registry
from jaxviz.core import analysis

# BatchNorm's running statistics after re-initialisation: Flax's initial values.
_STAT_INIT = {"mean": 0.0, "var": 1.0}


def rank_correlation(a, b) -> np.ndarray:
    """Spearman correlation per map, ties given their average rank. (N, ...) x2 -> (N,).
    A constant map correlates 0 with anything (a blank CAM is a map that lost everything);
    a map with any NaN or inf gives NaN (never a number)."""
    from scipy.stats import rankdata  # noqa: PLC0415 - scipy.stats costs every CLI start 0.9 s

    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    finite = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    ra = rankdata(np.where(finite[:, None], a, 0.0), axis=1)
    rb = rankdata(np.where(finite[:, None], b, 0.0), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    norm = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    r = np.where(norm > 0, (ra * rb).sum(1) / np.where(norm > 0, norm, 1), 0.0)
    return np.where(finite, r, np.nan)


def _path_names(path) -> list[str]:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(str(getattr(k, attr)))
                break
    return out


def _is_var(v) -> bool:
    return isinstance(v, nnx.Variable)


def _variables(params):
    """[(names, kind, node)] per variable in flatten order, and the treedef. names: the path
    inside the model (Linen's collection dropped); kind: "param", "stat" or "other"."""
    flat, tree = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_var)
    linen = not isinstance(params, nnx.State) and "params" in params
    out = []
    for path, node in flat:
        names = _path_names(path)
        if _is_var(node):
            kind = ("param" if isinstance(node, nnx.Param) else
                    "stat" if isinstance(node, nnx.BatchStat) else "other")
        elif linen:
            collection, names = names[0], names[1:]
            kind = {"params": "param", "batch_stats": "stat"}.get(collection, "other")
        else:  # bare Linen params, no collections
            kind = "param"
        out.append((names, kind, node))
    return out, tree


def _redraw(name: str, kind: str, leaf, rng: np.random.Generator):
    """One leaf as a re-initialised layer holds it (the rules in the module docstring)."""
    if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.floating):
        return leaf
    # numpy, not jax.random / jnp ops: eager, those would compile once per leaf shape.
    if kind == "stat":
        return jnp.asarray(np.full(leaf.shape, _STAT_INIT[name]), leaf.dtype) \
            if name in _STAT_INIT else leaf
    if kind != "param":
        return leaf
    v = np.asarray(leaf, np.float64)
    noise = rng.standard_normal(v.shape)
    if name == "scale":
        return jnp.asarray(np.abs(noise) * np.sqrt(np.mean(v * v)), leaf.dtype)
    return jnp.asarray(noise * np.std(v), leaf.dtype)


def _redraw_node(name, kind, node, rng):
    if not _is_var(node):
        return _redraw(name, kind, node, rng)
    leaves, tree = jax.tree.flatten(node)  # a Variable: its value as a pytree
    return jax.tree.unflatten(tree, [_redraw(name, kind, a, rng) for a in leaves])


def _leaf_rng(key, i: int) -> np.random.Generator:
    """The generator of variable i: the key's bits and i, so a leaf draws the same values
    whichever layers are randomised with it."""
    return np.random.default_rng([*np.asarray(jax.random.key_data(key)).ravel().tolist(), i])


def _under(names: list[str], parts: list[str]) -> bool:
    return names[:len(parts)] == parts


def randomize_layers(params, layers, key):
    """A copy of params (NNX State or Linen variables) with every variable under `layers`
    (a layer's path covers everything inside it) re-initialised by the rules in the module
    docstring. The same key draws the same values for a leaf whatever `layers` is, so
    growing `layers` randomises cumulatively."""
    parts = [layer.split(".") for layer in layers]
    items, tree = _variables(params)
    nodes = [_redraw_node(names[-1] if names else "", kind, node, _leaf_rng(key, i))
             if kind != "other" and any(_under(names, p) for p in parts) else node
             for i, (names, kind, node) in enumerate(items)]
    return jax.tree.unflatten(tree, nodes)


def _owned(probe, params, x_shape) -> tuple[list[str], dict[str, set[int]]]:
    """Called layers (call order) and, per layer, the indices of the randomisable variables
    under it."""
    order = list(probe.layer_shapes(tuple(x_shape)))
    items, _ = _variables(params)
    under = {name: {i for i, (names, kind, _) in enumerate(items)
                    if kind != "other" and _under(names, name.split("."))} for name in order}
    return order, under


def layers_with_params(probe, params, x_shape) -> list[str]:
    """Called layers with parameters or BatchNorm statistics under them, in call order
    (blocks included; a layer holding only RNG state is not one)."""
    order, under = _owned(probe, params, x_shape)
    return [name for name in order if under[name]]


def cascade_layers(probe, params, x_shape) -> list[str]:
    """The default cascade, top first: every layer that itself holds a variable (its deepest
    called layer), each once. A layer holding variables and layers with variables is placed
    after those inner layers, since randomising it covers them."""
    order, under = _owned(probe, params, x_shape)
    held = set().union(*under.values()) if under else set()
    owners = {max((n for n in order if i in under[n]), key=lambda n: n.count("."))
              for i in held}
    steps = [n for n in reversed(order) if n in owners]
    pos = {n: i for i, n in enumerate(steps)}
    last = {n: max(pos[m] for m in steps if m == n or m.startswith(n + ".")) for n in steps}
    return sorted(steps, key=lambda n: (last[n], -n.count(".")))


def check_cascade(probe, params, x_shape, layers=None) -> list[str]:
    """`layers` (default `cascade_layers`) checked: each a layer with parameters, each step
    randomising something no earlier step did. -> the list, top first."""
    if layers is None:
        return cascade_layers(probe, params, x_shape)
    layers = list(layers)
    known = layers_with_params(probe, params, x_shape)
    bad = [layer for layer in layers if layer not in known]
    if bad or not layers:
        raise ValueError(f"layers must be a non-empty list of layers with parameters "
                         f"{known}; got {layers!r}")
    _, under = _owned(probe, params, x_shape)
    done: set[int] = set()
    for i, layer in enumerate(layers):
        if not under[layer] - done:
            by = [e for e in layers[:i] if under[layer] & under[e]]
            raise ValueError(f"layers: every parameter of {layer!r} was already randomised "
                             f"by {by} at an earlier step, so that step would change nothing")
        done |= under[layer]
    return layers


def _maps(name, probe, params, x, t, cam_layer, key):
    method = registry.get(name)
    opts = {"layer": cam_layer} if cam_layer is not None and method.needs_probe else {}
    with warnings.catch_warnings():  # blank CAMs of a randomized model are the point here
        warnings.simplefilter("ignore", RuntimeWarning)
        res = method(probe, params, x, t, key=key if method.needs_key else None, **opts)
    return np.asarray(registry.display_map(method, res))


def _bad_images(maps: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(~np.isfinite(maps.reshape(len(maps), -1)).all(1))]


def cascading_randomization(probe, params, images, target, *, key,
                            methods=("saliency", "grad_cam"), layers=None,
                            cam_layer: str | None = None) -> dict:
    """Rank correlation of each method's maps with the original model's, as layers are
    re-initialised cumulatively from the top (`randomize_layers`; key draws the weights).

    layers: top first; default `cascade_layers` (each parameter once). A layer whose every
    parameter an earlier step already randomised is refused (that step would change nothing).
    Returns {"layers": [top layer, next, ...], method: np.ndarray (L,) mean Spearman over
    images after re-initialising layers[:i + 1], ...}. An entry is NaN where a map of the
    randomised model has NaN/inf (with a RuntimeWarning naming method, layer and images);
    NaN maps of the trained model are a ValueError.
    """
    for name in methods:
        registry.get(name)  # unknown names: a clear error before any work
    x, t = analysis.check_inputs(probe, params, images, target)
    layers = check_cascade(probe, params, x.shape, layers)
    # Each method's own noise stays fixed across the cascade (only the weights change) and
    # is keyed by its name, so it does not depend on the other methods checked.
    keys = {m: registry.method_key(key, m) for m in methods}
    base = {m: _maps(m, probe, params, x, t, cam_layer, keys[m]) for m in methods}
    for m, b in base.items():
        if _bad_images(b):
            raise ValueError(f"{m}: the trained model's maps have NaN/inf for images "
                             f"{_bad_images(b)}; there is nothing to compare against")
    out = {"layers": layers, **{m: np.zeros(len(layers)) for m in methods}}
    first_nan: dict[str, tuple[str, list[int]]] = {}
    # A loop over layers, not images: every call reuses the same compiled functions. The
    # same key draws the same values for a layer at every step, so the cascade is cumulative.
    for i in range(len(layers)):
        p = randomize_layers(params, layers[:i + 1], key)
        for m in methods:
            maps = _maps(m, probe, p, x, t, cam_layer, keys[m])
            if _bad_images(maps) and m not in first_nan:
                first_nan[m] = (layers[i], _bad_images(maps))
            out[m][i] = float(rank_correlation(base[m], maps).mean())
    for m, (layer, images) in first_nan.items():
        nan_at = [layers[j] for j in np.flatnonzero(np.isnan(out[m]))]
        warnings.warn(f"{m}: the model randomised down to {layer!r} gives NaN/inf maps for "
                      f"images {images}; the curve is NaN at {nan_at}",
                      RuntimeWarning, stacklevel=2)
    return out
