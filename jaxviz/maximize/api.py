"""`maximize` and `all_units`: validate in Python (`plan_ascent`), then run the cached
jitted ascent (`loop.run`)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from jaxviz.core import probe as probe_lib
from jaxviz.core.checks import positive_int
from jaxviz.core.probe import Probe
from jaxviz.maximize import batched
from jaxviz.maximize import image as image_lib
from jaxviz.maximize import loop as loop_lib
from jaxviz.core.objectives import Objective, as_objective, channel, class_logit
from jaxviz.core.objectives import batch as stack_objectives

ADAM = optax.adam(0.05)  # one object, so the default never forces a retrace


@dataclass(frozen=True)
class _LogitsOnly:
    """A plain apply_fn seen as a probe with no named layers."""
    fn: Callable

    def run(self, params, x):
        return self.fn(params, x), {}


def maximize(model, params, objective, *, key, steps: int = 256,
             optimizer: optax.GradientTransformation = ADAM, shape=None,
             input_range=None, regularizers=(), transforms=(), param="pixel",
             squash: str = "sigmoid", loop: str = "auto",
             checkpoints: Sequence[int] = (), batch: int = 1, share: bool = False,
             colour=None) -> loop_lib.Maximized:
    """Gradient ascent on the input for one objective or a list (one image per unit).

    model: a Probe (layer objectives) or any `fn(params, x) -> logits` (class objectives).
    objective: an Objective, a plain function `fn(acts) -> (B,)` of the activations dict
      (`acts["logits"]` is the output), or a list of them (U units, batched with vmap).
    shape: one image (H, W, C); default: the Probe's input_shape (a plain fn needs it).
    input_range: (lo, hi), reached by `squash` ("sigmoid" or "clip"); default: the Probe's
      input_range, (0, 1) for a plain fn.
    param: "pixel", "fourier", "lucid" (Lucid's decorrelated Fourier image), "lucid-pixel",
      "cppn", or a parametrization object (image.Pixels, fourier.DecorrelatedFourier, ...).
    colour: the (C, C) colour basis of "lucid"/"lucid-pixel" (colour.colour_sqrt(images) of
      the user's data, colour.IMAGENET); default ImageNet's for 3 channels, else identity.
    batch: images per unit (default 1); with n > 1 each unit optimises n images seen by the
      model as one batch, for objectives coupling them (lucid_objectives.diversity,
      channel_interpolate, alignment); share: add parameters common to the n images.
      images and best are then (U, n, H, W, C).
    regularizers: penalties `image -> scalar` subtracted from the objective (image.lp_norm,
      total_variation, blur, decay); transforms: `(key, image) -> image` applied in order
      before the model sees the image (image.jitter, scale, rotate, pad, crop).
    loop: "python", "scan" (same results) or "auto": scan, except on CPU with fastgrad off
      (jaxviz.core.compile's policy), where python unless a step is cheap (loop.choose_loop).
    checkpoints: steps (0..steps) at which to also return the images, e.g. (0, 16, 64, 256).
    Every unit starts from the same image (from `key`) and sees the same transforms, so a
    unit's result does not depend on the other units. The trace (and so `best`) is the
    objective without penalties, as the model saw the image (after transforms).
    Returns Maximized(images (U, H, W, C) final, best (U, H, W, C) highest objective seen,
      trace (U, steps) objective per step, best_step (U,), snapshots (S, U, H, W, C) | None).
    Raises FloatingPointError naming the unit and step if NaN/inf appears mid-run; warns
    (RuntimeWarning) for a unit whose gradient is zero throughout.

    Pass the same optimizer object across calls (not a fresh `optax.adam(...)`) to reuse
    the compiled ascent. Example:
        r = maximize(probe, params, [class_logit(k) for k in range(10)], key=jax.random.key(0),
                     regularizers=(total_variation(0.1),), transforms=(jitter(1),))
    """
    return loop_lib.run(*plan_ascent(model, params, objective, key=key, steps=steps,
                                     optimizer=optimizer, shape=shape, input_range=input_range,
                                     regularizers=regularizers, transforms=transforms,
                                     param=param, squash=squash, loop=loop,
                                     checkpoints=checkpoints, batch=batch, share=share,
                                     colour=colour))


def plan_ascent(model, params, objective, *, key, steps, optimizer, shape, input_range,
                regularizers, transforms, param, squash, loop, checkpoints, batch=1,
                share=False, colour=None) -> tuple:
    """Validate everything -> the arguments of `loop.run` (benchmarks lower `loop.step`).

    The model enters the compiled ascent as `probe.static_view(model)`: no weights kept."""
    steps = positive_int(steps, "steps")
    shape, (lo, hi) = _shape(shape, model), _range(input_range, model)
    if loop not in ("auto", "python", "scan"):
        raise ValueError(f"loop must be 'auto', 'python' or 'scan'; got {loop!r}")
    objs = [as_objective(o) for o in (objective if isinstance(objective, (list, tuple))
                                      else [objective])]
    if not objs:
        raise ValueError("objective: got an empty list; pass at least one objective")
    if key is None or not hasattr(key, "dtype"):
        raise ValueError(f"key must be a jax.random key (jax.random.key(0)); got {key!r}")
    cps = tuple(checkpoints)
    for c in cps:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= steps:
            raise ValueError(f"checkpoints must be ints in [0, steps={steps}]; got {cps}")
    if not isinstance(param, str) and colour is not None:
        raise ValueError("colour: pass it with param='lucid' or 'lucid-pixel'; a "
                         "parametrization object carries its own colour basis")
    parametrization = (image_lib.parametrization(param, shape, (lo, hi), squash, colour)
                       if isinstance(param, str) else param)
    batch = positive_int(batch, "batch")
    if batch > 1 or share:
        parametrization = batched.Batch(parametrization, batch, bool(share))
    regs = _callables(regularizers, "regularizers")
    trs = _callables(transforms, "transforms")
    transform = image_lib.chain(*trs) if trs else None
    seen = _seen_shape(transform, shape)
    out_shape, layer_shapes = model_shapes(model, params, seen)
    for o in objs:
        o.node.check(o.args, out_shape, layer_shapes)
    node, unit_args, shared = stack_objectives(objs)
    static_model = probe_lib.static_view(_as_fn(model))  # a Probe or _LogitsOnly: has .run
    cfg = loop_lib.Config(static_model, node, parametrization, optimizer, regs, transform)
    return cfg, params, unit_args, shared, key, steps, loop, cps, [o.name for o in objs]


def all_units(model, params, layer: str = "logits", *, units: Sequence[int] | None = None,
              key, shape=None, **kwargs) -> loop_lib.Maximized:
    """Maximize every class (layer="logits") or every channel of `layer` in one call.

    units: a subset of indices (default all). shape: as in `maximize` (default: the
    Probe's input_shape). kwargs go to `maximize`.
    """
    shape = _shape(shape, model)
    out_shape, layer_shapes = model_shapes(model, params, shape)
    if layer == "logits":
        n, make = out_shape[-1], class_logit
    else:
        if layer not in layer_shapes:
            raise ValueError(f"unknown layer {layer!r}; known layers: "
                             f"{['logits'] + list(layer_shapes)}")
        n, make = layer_shapes[layer][-1], (lambda c: channel(layer, c))
    idx = list(range(n)) if units is None else [int(u) for u in units]
    return maximize(model, params, [make(i) for i in idx], key=key, shape=shape, **kwargs)


def model_shapes(model, params, image_shape) -> tuple[tuple, dict]:
    """(output shape, {layer: shape}) for a batch of one image, or a ValueError."""
    x_shape = (1,) + tuple(image_shape)
    try:
        if isinstance(model, Probe):
            return model.output_shape(x_shape), dict(model.layer_shapes(x_shape))
        x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
        return tuple(jax.eval_shape(_as_fn(model).fn, params, x).shape), {}
    except (TypeError, ValueError) as err:
        if "unknown layer" in str(err):
            raise
        raise ValueError(f"shape: the model cannot take images shaped {tuple(image_shape)} "
                         f"(fed as {x_shape}): {err}") from err


def _as_fn(model):
    if isinstance(model, Probe):
        return model
    if not callable(model):
        raise TypeError(f"model must be a Probe or a function fn(params, x) -> logits; "
                        f"got {type(model).__name__}")
    return _LogitsOnly(model)


def _shape(shape, model) -> tuple[int, int, int]:
    if shape is None:
        shape = model.input_shape if isinstance(model, Probe) else None
        if shape is None:
            raise ValueError("shape: the model's input shape is unknown; pass shape=(H, W, C) "
                             "or make the probe with from_model(..., input_shape=(H, W, C))")
    shape = tuple(shape)
    if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                              for s in shape):
        raise ValueError(f"shape must be one image (H, W, C) of positive ints; got {shape}")
    return shape


def _range(input_range, model) -> tuple[float, float]:
    if input_range is None:
        return model.input_range if isinstance(model, Probe) else (0.0, 1.0)
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be a pair (lo, hi); got {input_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"input_range must be finite with lo < hi; got {input_range!r}")
    return lo, hi


def _callables(items, name) -> tuple:
    items = (items,) if callable(items) else tuple(items or ())
    for it in items:
        if not callable(it):
            raise TypeError(f"{name} must be callables (see jaxviz.maximize.image); got {it!r}")
    return items


def _seen_shape(transform, shape):
    if transform is None:
        return shape
    out = jax.eval_shape(transform, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
    return tuple(out.shape)


__all__ = ["maximize", "all_units", "model_shapes", "plan_ascent", "Objective", "ADAM"]
