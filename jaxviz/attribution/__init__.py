"""Attribution: which input pixels (or layer positions) a class score depends on.

One API shape, Captum's argument names:
    method(fn, params, images, target, **options) -> (N, H, W, C) float32   (CAMs: (N, H, W))
`fn(params, x) -> (N, K) logits` is any apply_fn or a `jaxviz.core.probe.Probe` (the CAMs need a
Probe); `images` (N, H, W, C); `target` an int or one class per image. Every method is
batched, jittable and cached: a second call with the same shapes and options does not retrace.

    from jaxviz import attribution as attr
    s = attr.saliency(probe, probe.params, x, y)
    ig, delta = attr.integrated_gradients(probe, probe.params, x, y, n_steps=64,
                                          return_convergence_delta=True)
    cam = attr.grad_cam(probe, probe.params, x, y)           # last spatial layer
"""
from jaxviz.attribution.cam import (  # noqa: F401
    grad_cam, grad_cam_plus_plus, guided_grad_cam, score_cam, spatial_layers)
from jaxviz.attribution.gradients import (  # noqa: F401
    deconvnet, gradient_x_input, guided_backprop, saliency, smoothgrad)
from jaxviz.attribution.integrated import (  # noqa: F401
    blur_baseline, integrated_gradients, path_weights)
from jaxviz.attribution.normalize import (  # noqa: F401
    clip_percentile, max_abs, reduce_channels, unit_range)
from jaxviz.attribution.relu_rules import with_relu_rule  # noqa: F401
from jaxviz.attribution.sanity import cascading_randomization, rank_correlation  # noqa: F401

# Every method by name (for a CLI's --method); those in NEEDS_KEY take key=.
METHODS = {
    "saliency": saliency, "gradient_x_input": gradient_x_input,
    "guided_backprop": guided_backprop, "deconvnet": deconvnet, "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients, "grad_cam": grad_cam,
    "grad_cam_plus_plus": grad_cam_plus_plus, "score_cam": score_cam,
    "guided_grad_cam": guided_grad_cam,
}
NEEDS_KEY = frozenset({"smoothgrad"})
