"""Model-randomization sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Re-initialise the model's layers cumulatively from the top (output layer first) and measure,
after each step, how similar each method's maps stay to the trained model's maps (Spearman
rank correlation per image, averaged). A method that explains the model should lose that
similarity; one that stays high is mostly reacting to the input (an edge detector).

Measured on the seed's CNN trained 2 epochs (95.4% val.), first 64 validation digits, mean
Spearman after re-initialising down to preds / dense1 / conv2 / conv1 (two draws, keys 42/7):
    saliency            0.58 0.50 0.33 0.26  /  0.59 0.51 0.33 0.34
    Grad-CAM           -0.08 0.30 0.67 0.60  /  0.58 0.14 0.00 -0.34  (sign follows the head)
    guided backprop     0.89 0.81 0.64 0.61  /  0.92 0.83 0.67 0.69  (as Adebayo et al. found)
    gradient x input    0.99 0.98 0.98 0.98   (|x * grad| is 0 wherever the digit is 0)
    Grad-CAM++          0.96 0.97 0.90 0.90   (weights from relu(grad): ~ activation sum)
Guided backprop, gradient x input and Grad-CAM++ barely move: they mostly show the input
(strokes, edges), not the model. Grad-CAM depends on the draw once the conv layers are
random: relu(sum_k w_k A_k) then follows wherever random filters respond, i.e. the strokes.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from jaxviz.core import probe as probe_lib
from jaxviz.attribution import cam, gradients, normalize

METHODS = ("saliency", "grad_cam", "guided_backprop", "gradient_x_input", "grad_cam_plus_plus")


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


def _maps(method, probe, params, x, t, cam_layer):
    if method in ("grad_cam", "grad_cam_plus_plus"):
        fn = cam.grad_cam if method == "grad_cam" else cam.grad_cam_plus_plus
        with warnings.catch_warnings():  # blank CAMs of a randomized model are the point here
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(probe, params, x, t, layer=cam_layer)
    fn = {"saliency": gradients.saliency, "guided_backprop": gradients.guided_backprop,
          "gradient_x_input": gradients.gradient_x_input}[method]
    return normalize.reduce_channels(jnp.abs(fn(probe, params, x, t)), "max")


def cascading_randomization(probe, params, images, target, *, key,
                            methods=("saliency", "grad_cam"), layers=None,
                            cam_layer: str | None = None) -> dict:
    """Rank correlation of each method's maps with the original model's, as layers are
    re-initialised cumulatively from the top.

    Returns {"layers": [top layer, next, ...], method: np.ndarray (L,) mean Spearman over
    images after re-initialising layers[:i + 1], ...}.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods must be among {METHODS}; got {unknown}")
    x, t = gradients.prepare(probe, params, images, target)
    known = layers_with_params(probe, params, x.shape)
    layers = list(reversed(known)) if layers is None else list(layers)
    bad = sorted(set(layers) - set(known))
    if bad:
        raise ValueError(f"layers {bad} have no parameters; layers with parameters: {known}")
    base = {m: _maps(m, probe, params, x, t, cam_layer) for m in methods}
    out = {"layers": layers, **{m: np.zeros(len(layers)) for m in methods}}
    # A loop over layers, not images: every call reuses the same compiled functions. The
    # same key draws the same values for a layer at every step, so the cascade is cumulative.
    for i in range(len(layers)):
        p = randomize_layers(params, layers[:i + 1], key)
        for m in methods:
            out[m][i] = float(rank_correlation(base[m], _maps(m, probe, p, x, t, cam_layer)).mean())
    return out
