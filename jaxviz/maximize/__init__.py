"""Activation maximization: what each class or filter "looks for", all units in one program.

    from jaxviz import maximize as mx
    r = mx.maximize(probe, params, [mx.class_logit(k) for k in range(10)],
                    key=jax.random.key(0), steps=256,
                    regularizers=(mx.total_variation(0.1),), transforms=(mx.jitter(1),))
    r.best          # (10, 28, 28, 1), the highest-objective image per class
    r.trace         # (10, 256), the objective at every step
    mx.all_units(probe, params, "conv1", key=key)      # all 32 filters at once

A user objective is a plain function of the activations dict ("logits" is the output):

    r = mx.maximize(probe, params, lambda acts: acts["conv2"][..., 3].max(axis=(1, 2)),
                    key=key)

Modules: `jaxviz.core.objectives` (values to maximize, composable; shared with the
attribution methods' targets), `image` (parametrizations, regularizers, transforms), `loop` (the jitted vmapped step and its two loop forms), `api`.
"""
from jaxviz.core.objectives import (  # noqa: F401
    Objective, channel, class_logit, class_prob, custom, direction, margin, neuron, region)
from jaxviz.maximize.api import ADAM, all_units, maximize, model_shapes  # noqa: F401
from jaxviz.maximize.image import (  # noqa: F401
    Fourier, Pixels, blur, chain, crop, decay, jitter, lp_norm, pad, parametrization, rotate,
    scale, total_variation)
from jaxviz.maximize.loop import Maximized  # noqa: F401
from jaxviz.maximize import colour  # noqa: F401
from jaxviz.maximize.colour import IMAGENET, colour_sqrt  # noqa: F401
from jaxviz.maximize.cppn import CPPN  # noqa: F401
from jaxviz.maximize.fourier import DecorrelatedFourier, DecorrelatedPixels, spectrum_scale  # noqa: F401
from jaxviz.maximize.lucid_objectives import (  # noqa: F401
    alignment, caricature, channel_interpolate, diversity, match)
from jaxviz.maximize.transforms import resize, shrink, standard_transforms  # noqa: F401
