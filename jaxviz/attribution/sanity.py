"""Model-randomization sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Re-initialise the model's layers cumulatively from the top (output layer first) and measure,
after each step, how similar each method's maps stay to the trained model's maps (Spearman
rank correlation per image, averaged). A method that explains the model should lose that
similarity; one that stays high is mostly reacting to the input (an edge detector).
Any registered method can be checked; measurements on the reference CNN are in
docs/sanity.md.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from jaxviz.core import probe as probe_lib
from jaxviz.attribution import registry
from jaxviz.core import analysis


def rank_correlation(a, b) -> np.ndarray:
    """Spearman correlation per map, ties given their average rank. (N, ...) x2 -> (N,).
    A constant map correlates 0 with anything (instead of NaN)."""
    ra = rankdata(np.asarray(a, np.float64).reshape(len(a), -1), axis=1)
    rb = rankdata(np.asarray(b, np.float64).reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    norm = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    return np.where(norm > 0, (ra * rb).sum(1) / np.where(norm > 0, norm, 1), 0.0)


def _path_names(path) -> list[str]:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(str(getattr(k, attr)))
                break
    return out


def layers_with_params(probe, params, x_shape) -> list[str]:
    """Layers that own parameters, in call order."""
    out = []
    for name in probe.layer_shapes(tuple(x_shape)):
        try:
            probe_lib.layer_params(probe, params, name)
        except ValueError:
            continue
        out.append(name)
    return out


def randomize_layers(params, layers, key):
    """A copy of params with every leaf under `layers` redrawn as normal noise of the leaf's
    own std (zero-std leaves, e.g. fresh biases, stay as they are)."""
    parts = [layer.split(".") for layer in layers]
    flat, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(flat))
    leaves = []
    for (path, leaf), k in zip(flat, keys):
        names = _path_names(path)
        names = names[1:] if names[:1] == ["params"] else names  # Linen's collection
        if any(names[:len(p)] == p for p in parts):
            leaf = jax.random.normal(k, leaf.shape, leaf.dtype) * jnp.std(leaf)
        leaves.append(leaf)
    return jax.tree.unflatten(tree, leaves)


def _maps(name, probe, params, x, t, cam_layer, key):
    method = registry.get(name)
    opts = {"layer": cam_layer} if cam_layer is not None and method.needs_probe else {}
    with warnings.catch_warnings():  # blank CAMs of a randomized model are the point here
        warnings.simplefilter("ignore", RuntimeWarning)
        res = method(probe, params, x, t, key=key if method.needs_key else None, **opts)
    return registry.display_map(method, res)


def cascading_randomization(probe, params, images, target, *, key,
                            methods=("saliency", "grad_cam"), layers=None,
                            cam_layer: str | None = None) -> dict:
    """Rank correlation of each method's maps with the original model's, as layers are
    re-initialised cumulatively from the top.

    Returns {"layers": [top layer, next, ...], method: np.ndarray (L,) mean Spearman over
    images after re-initialising layers[:i + 1], ...}.
    """
    for name in methods:
        registry.get(name)  # unknown names: a clear error before any work
    x, t = analysis.check_inputs(probe, params, images, target)
    known = layers_with_params(probe, params, x.shape)
    layers = list(reversed(known)) if layers is None else list(layers)
    bad = sorted(set(layers) - set(known))
    if bad:
        raise ValueError(f"layers {bad} have no parameters; layers with parameters: {known}")
    # Each method's own noise stays fixed across the cascade: only the weights change.
    keys = {m: jax.random.fold_in(key, i) for i, m in enumerate(methods)}
    base = {m: _maps(m, probe, params, x, t, cam_layer, keys[m]) for m in methods}
    out = {"layers": layers, **{m: np.zeros(len(layers)) for m in methods}}
    # A loop over layers, not images: every call reuses the same compiled functions. The
    # same key draws the same values for a layer at every step, so the cascade is cumulative.
    for i in range(len(layers)):
        p = randomize_layers(params, layers[:i + 1], key)
        for m in methods:
            out[m][i] = float(rank_correlation(base[m], _maps(m, probe, p, x, t, cam_layer, keys[m])).mean())
    return out
