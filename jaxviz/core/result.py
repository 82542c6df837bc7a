"""The one result type of every attribution method, and its blank-map check.

    res = method(fn, params, images, target, **options)    # any method, called any way
    res.map                  # (N, H, W, C) pixel map, (N, H, W) for CAMs and occlusion
    res.extras["delta"]      # named extras: a convergence delta, occlusion's scores, ...

`attribution_method(name, cause=...)` wraps a public method function: its output becomes an
`Attribution` with a float32 map, and a map that is exactly zero everywhere for an image
raises a `BlankMapWarning` naming the method, the images and the likely cause. The
registry's `Method.__call__` goes through the same `run_method`, so a call through the
registry warns once, under the registered name; calls nested inside a method (LIME's
inner occlusion, a noise tunnel's inner method) are checked only by the outermost one.
Under the user's own jit the map is a tracer and is not checked.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import checks
from jaxviz.core import method as method_lib


class BlankMapWarning(RuntimeWarning):
    """An attribution map is exactly zero everywhere for at least one image."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Attribution:
    """map: (N, H, W, C) for pixel methods, (N, H, W) for CAMs and occlusion;
    extras: named arrays, e.g. {"delta": (N,)} for Integrated Gradients."""
    map: jax.Array
    extras: Mapping[str, jax.Array] = dataclasses.field(default_factory=dict)


REMOVED_DELTA_FLAG = ("return_convergence_delta was removed: every method with a convergence "
                      "delta always returns it, as res.extras['delta'] (res.map is the map)")

GENERIC_CAUSE = ("the target's score does not change with the input the method perturbs or "
                 "differentiates here (a saturated or dead unit, a constant output), or the "
                 "baseline equals the image; check the model's output for these images or try "
                 "another method")


def cam_cause(options: Mapping) -> str:
    """Why a CAM is blank: after its ReLU, nothing positive is left at the layer."""
    layer = options.get("layer")
    at = f"layer {layer!r}" if layer is not None else "the default layer"
    return (f"the channel-weighted sum at {at} is <= 0 everywhere, so its ReLU leaves "
            f"nothing: no positive evidence for the target at that layer; pass another "
            f"layer= (attribution.cam.suggest_layers lists them), relu=False to see the "
            f"negative map, or use a different method")


def lime_cause(options: Mapping) -> str:
    """Why LIME is blank: the Lasso penalty shrank every coefficient to zero."""
    alpha = options.get("alpha", 0.01)
    return (f"the Lasso penalty alpha={alpha} is large against the scale of the target "
            f"scores, so every coefficient was shrunk to 0; pass a smaller alpha= (e.g. "
            f"{alpha / 100:g}) or alpha=0 for weighted least squares")


_DEPTH = contextvars.ContextVar("jaxviz_method_depth", default=0)


def as_attribution(out, name: str = "method") -> Attribution:
    """An Attribution (or a bare map array from a user's method) with a float32 map. A
    tuple, list or dict is refused: read as one array it would stack the map with its
    extras (image 0's map as the map) without a word."""
    if not isinstance(out, Attribution) and not hasattr(out, "shape"):
        raise TypeError(f"{name} must return an Attribution(map, extras) or a map array "
                        f"(N, H, W[, C]); got {type(out).__name__}. Put extra outputs in "
                        f"Attribution(map, extras={{'delta': ...}}) (jaxviz.core.result)")
    res = out if isinstance(out, Attribution) else Attribution(out, {})
    m = res.map
    m = np.asarray(m, np.float32) if isinstance(m, np.ndarray) else jnp.asarray(m, jnp.float32)
    return dataclasses.replace(res, map=m)


def blank_images(m) -> list[int]:
    """Indices of the images whose map (N, ...) is exactly zero everywhere."""
    flat = np.asarray(m).reshape(np.shape(m)[0], -1)
    return np.flatnonzero(~np.any(flat != 0, axis=1)).tolist()


def warn_if_blank(m, name: str, cause, options: Mapping, stacklevel: int = 3) -> None:
    """BlankMapWarning when the map (N, ...) of some image is zero everywhere; a tracer
    (the caller's own jit) is not checked."""
    if checks.is_traced(m) or np.ndim(m) == 0:
        return
    dead = blank_images(m)
    if dead:
        why = cause(options) if callable(cause) else (cause or GENERIC_CAUSE)
        warnings.warn(f"{name}: the map is exactly zero everywhere for image(s) {dead} (of "
                      f"{np.shape(m)[0]}); a blank map does not mean nothing matters. Likely "
                      f"cause: {why}", BlankMapWarning, stacklevel=stacklevel + 1)


def checked(name: str, out, cause=None, options: Mapping | None = None) -> Attribution:
    """One more result of a method (e.g. each score of `occlusion_by_score`) as an
    Attribution, checked for blank maps as `run_method` checks its result."""
    res = as_attribution(out, name)
    if _DEPTH.get() == 0:
        warn_if_blank(res.map, name, cause, options or {}, stacklevel=3)
    return res


def run_method(name: str, fn: Callable, args, options: dict, cause=None) -> Attribution:
    """fn(*args, **options) as an Attribution, checked for blank maps unless it runs inside
    another method (which checks its own result)."""
    if "return_convergence_delta" in options:
        raise TypeError(f"{name}: {REMOVED_DELTA_FLAG}")
    token = _DEPTH.set(_DEPTH.get() + 1)
    try:
        res = as_attribution(fn(*args, **options), name)
    finally:
        _DEPTH.reset(token)
    if _DEPTH.get() == 0:
        warn_if_blank(res.map, name, cause, options, stacklevel=3)
    return res


def attribution_method(name: str, cause=None, *, targets=None):
    """Decorator for a public method `fn(model, params, images, target, **options)`: it
    returns an Attribution and warns on blank maps. cause: a string or
    cause(options) -> str saying why this method's map is likely blank.

    targets: a `jaxviz.core.method.Support` (GRADIENT, CAM, PERTURBATION or the method's
    own): the method ritual. fn is then called with checked (N, H, W, C) float32 images and
    a resolved `targets.Target` (any target the Support takes; the others are refused
    naming method and target), `layer=` on a method with a layer form runs that form, and
    a predicted-class target's classes land in extras["target"]. Without it, fn gets the
    arguments as given (a method that checks them itself)."""
    def wrap(fn):
        body = fn if targets is None else _ritual(name, fn, targets)
        # layer= on a method without its own layer option is its layer form, whether or not
        # the method runs the ritual (an error names the methods that have one).
        if "layer" not in inspect.signature(fn).parameters and (
                targets is None or targets.layer == "form"):
            body = _with_layer_form(name, body)

        @functools.wraps(fn)
        def method(*args, **options):
            return run_method(name, body, args, options, cause)
        method.method_name = name
        method.blank_cause = cause
        method.target_support = targets
        return method
    return wrap


def _with_layer_form(name: str, body: Callable) -> Callable:
    """body, with layer=L dispatched to method `name`'s layer form; layer=None: body."""
    def dispatch(*args, **options):
        layer = options.pop("layer", None)
        if layer is not None:
            return method_lib.layer_form(name)(*args, layer=layer, **options)
        return body(*args, **options)
    return dispatch


def _ritual(name: str, fn: Callable, support) -> Callable:
    def body(*args, **options):
        model, params, x, t = method_lib.prepare(name, fn, support, args, options)
        return method_lib.finish(as_attribution(fn(model, params, x, t, **options), name), t)
    return body
