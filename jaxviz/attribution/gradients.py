"""Gradient maps: saliency, gradient x input, guided backprop and deconvnet.

Every method: `method(fn, params, images, target, **options) -> Attribution` with map
(N, H, W, C) float32 (see `jaxviz.core.result`), where
`fn(params, x) -> (N, K) logits` is any apply_fn or a `jaxviz.core.probe.Probe`, `images` is
(N, H, W, C) and `target` any target (`jaxviz.core.targets`: a class index or one per image,
None for the predicted class, "all", or an objective such as `neuron("conv2", 3)` or
`class_prob(7)`; several targets give maps (N, T, H, W, C)). The gradient of image i is
taken of image i's score, so images must not interact inside `fn` (true for any model in
inference mode, which a Probe guarantees).

Options are checked in Python before tracing; each method is one compiled program
(`jaxviz.core.method.run`), so a second call with the same shapes does not retrace.
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

from jaxviz.propagation import relu_rules
from jaxviz.propagation.relu_rules import with_relu_rule
from jaxviz.core import analysis
from jaxviz.core import method
from jaxviz.core.result import Attribution, attribution_method

VARIANTS = ("gradient", "saliency", "gradient_x_input", "guided_backprop", "deconvnet")
RULES = {"guided_backprop": "guided", "deconvnet": "deconvnet"}


def gradient_map(variant: str, fn, params, x, t):
    """One of VARIANTS on a checked batch for ONE target t (a `targets.Target`), traced
    inline (no jit of its own)."""
    if variant in RULES:
        return method.input_grad(fn, params, x, t,
                                 rewrite=functools.partial(with_relu_rule, rule=RULES[variant]))
    g = method.input_grad(fn, params, x, t)
    return {"gradient": g, "saliency": jnp.abs(g), "gradient_x_input": g * x}[variant]


def _maths(fn, params, x, t, *, variant):
    return Attribution(gradient_map(variant, fn, params, x, t))


_CENSUS: dict = {}


def _warn_without_relus(variant, fn, params, x) -> None:
    """Guided backprop and deconvnet change only ReLUs' backward rules: on a model with none
    they would silently return the plain gradient, so say so (once per model and shape)."""
    if analysis.checks.is_traced(x):
        return
    key = (analysis.static_fn(fn), x.shape)
    if key not in _CENSUS:
        _CENSUS[key] = relu_rules.census(fn, params, jax.ShapeDtypeStruct(x.shape, x.dtype))
    found = _CENSUS[key]
    if found["relu"] == 0:
        warnings.warn(f"{variant}: the model has no ReLU to rewrite, so this is the plain "
                      f"input gradient; activations found: {found['other'] or 'none'}",
                      RuntimeWarning, stacklevel=7)


def _run(variant, fn, params, x, t) -> Attribution:
    if variant in RULES:
        _warn_without_relus(variant, fn, params, x)
    return method.run(_maths, fn, params, x, t, variant=variant)


@attribution_method("saliency", targets=method.GRADIENT)
def saliency(fn, params, images, target, *, abs: bool = True) -> Attribution:
    """|d score / d x| (Simonyan et al. 2014). (N, H, W, C) -> (N, H, W, C).

    abs=False gives the signed gradient (Captum's NeuronGradient with a neuron target).
    keras-vis also takes the max over channels: `normalize.reduce_channels(s, "max")`.
    """
    return _run("saliency" if abs else "gradient", fn, params, images, target)


@attribution_method("gradient_x_input", targets=method.GRADIENT)
def gradient_x_input(fn, params, images, target) -> Attribution:
    """x * d score / d x (Shrikumar et al. 2016). (N, H, W, C) -> (N, H, W, C)."""
    return _run("gradient_x_input", fn, params, images, target)


@attribution_method("guided_backprop", targets=method.GRADIENT)
def guided_backprop(fn, params, images, target) -> Attribution:
    """Input gradient through guided ReLUs (see `relu_rules`). (N, H, W, C) -> same, signed.

    Only ReLUs change (GELU, SiLU, tanh keep their gradient): on a model without ReLUs it
    warns and returns the plain gradient.

    `jnp.abs` of it is keras-vis' `visualize_saliency(..., backprop_modifier='guided')`.
    """
    return _run("guided_backprop", fn, params, images, target)


@attribution_method("deconvnet", targets=method.GRADIENT)
def deconvnet(fn, params, images, target) -> Attribution:
    """Input gradient through deconvnet ReLUs (see `relu_rules`). (N, H, W, C) -> same, signed."""
    return _run("deconvnet", fn, params, images, target)
