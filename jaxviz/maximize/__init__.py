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

Lucid's feature visualization (docs/maximize.md):

    r = mx.maximize(probe, params, [mx.channel("conv2", c) for c in range(16)], key=key,
                    param="lucid", colour=mx.colour_sqrt(train_images),
                    transforms=(mx.standard_transforms((32, 32)),))
    mx.maximize(probe, params, mx.channel("conv2", 3) + 1e2 * mx.diversity("conv2"),
                key=key, param="lucid", batch=4)       # r.images: (1, 4, H, W, C)

Modules: `jaxviz.core.objectives` (values to maximize, composable; shared with the
attribution methods' targets), `image` (parametrizations, regularizers, transforms),
`loop` (the jitted vmapped step and its two loop forms), `api`; Lucid's pieces: `colour`
(decorrelated colour space), `fourier` (decorrelated Fourier and pixel images), `cppn`,
`transforms` (standard robustness), `batched` (a batch of images per unit),
`lucid_objectives` (diversity, interpolation, alignment, feature inversion, caricature),
`groups` (neuron groups by NMF), `patches` (top-activating dataset patches).
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
from jaxviz.maximize.fourier import (  # noqa: F401
    DecorrelatedFourier, DecorrelatedPixels, spectrum_scale)
from jaxviz.maximize.lucid_objectives import (  # noqa: F401
    alignment, caricature, channel_interpolate, diversity, match)
from jaxviz.maximize.transforms import resize, shrink, standard_transforms  # noqa: F401
