"""Attribution: which input pixels (or layer positions) a class score depends on.

One API shape, Captum's argument names, one result type:
    method(fn, params, images, target, **options) -> Attribution
    .map: (N, H, W, C) float32 (CAMs, occlusion and the samplers: (N, H, W)); .extras: named
    arrays ({"delta": (N,)} for the methods with a convergence delta)
`fn(params, x) -> (N, K) logits` is any apply_fn or a `jaxviz.core.probe.Probe` (the CAMs
need a Probe); `images` (N, H, W, C); `target` an int or one class per image. Every method
is batched, jittable and cached: a second call with the same shapes does not retrace.

    from jaxviz import attribution as attr
    s = attr.saliency(probe, probe.params, x, y).map
    res = attr.attribute("integrated_gradients", probe, probe.params, x, y)  # any method
    res.map, res.extras["delta"]

Every method is registered below, one line each; the CLI, the report, the randomization
check, the tests and the benchmark iterate over `METHODS` (see `registry`).
"""
import dataclasses as _dc

from jaxviz import occlusion as _occlusion
from jaxviz.attribution.cam import (  # noqa: F401
    grad_cam, grad_cam_plus_plus, guided_grad_cam, score_cam, spatial_layers)
from jaxviz.attribution.cam_variants import (  # noqa: F401
    ablation_cam, eigen_cam, full_grad, hires_cam, layer_cam, xgrad_cam)
from jaxviz.attribution.expected_gradients import gradient_shap  # noqa: F401
from jaxviz.attribution.perturbation import feature_ablation, rise, shapley_sampling  # noqa: F401
from jaxviz.attribution.surrogate import kernel_shap, lime  # noqa: F401
from jaxviz.attribution.gradients import (  # noqa: F401
    deconvnet, gradient_x_input, guided_backprop, saliency)
from jaxviz.attribution.deeplift import deeplift, deeplift_shap  # noqa: F401
from jaxviz.attribution.lrp import lrp  # noqa: F401
from jaxviz.attribution.integrated import (  # noqa: F401
    blur_baseline, integrated_gradients, path_weights)
from jaxviz.attribution.noise_tunnel import noise_tunnel
from jaxviz.attribution.normalize import (  # noqa: F401
    clip_percentile, max_abs, reduce_channels, unit_range)
from jaxviz.attribution.registry import (  # noqa: F401
    METHODS, Attribution, BlankMapWarning, Method, attribute, compare, display_map, get,
    method_key, register, unregister)
from jaxviz.propagation.relu_rules import with_relu_rule  # noqa: F401
from jaxviz.attribution.sanity import cascading_randomization, rank_correlation  # noqa: F401
from jaxviz.core import method as _method_lib

smoothgrad = noise_tunnel(saliency, name="smoothgrad")
smoothgrad.__doc__ = ("SmoothGrad (Smilkov et al. 2017): noise_tunnel(saliency). "
                      "-> Attribution, map (N, H, W, C).")


# Why a method has no layer= (docs/targets.md): neither a CAM layer nor a layer form.
_INPUT_ONLY = "its features are groups of input pixels; Captum defines no layer form of it"
_NO_LAYER = {
    "saliency": "Captum has no layer saliency; the gradient at a layer is internal_influence "
                "or layer_gradient_x_activation (jaxviz.attribution.layer)",
    "guided_backprop": "its ReLU rule shapes the gradient down to the input; Captum defines no "
                       "layer form (NeuronGuidedBackprop is a neuron target here)",
    "deconvnet": "its ReLU rule shapes the gradient down to the input; Captum defines no "
                 "layer form",
    "smoothgrad": "the noise is added to the input pixels; Captum's NoiseTunnel has no layer "
                  "form",
    "occlusion": "it occludes windows of input pixels; layer_feature_ablation ablates a "
                 "layer's units",
    "shapley_sampling": _INPUT_ONLY, "kernel_shap": _INPUT_ONLY, "lime": _INPUT_ONLY,
    "rise": _INPUT_ONLY,
    "deeplift_shap": "layer_deeplift is the layer form of DeepLIFT; the SHAP average over "
                     "baselines has none",
}
# DeepLIFT and LRP check their own targets: relevance starts at one unit's value.
_NO_UNIT = ("relevance starts at a unit's value (a logit, a neuron, a channel, a direction); "
            "{} is not one")
_PROPAGATION = _method_lib.Support(
    kinds={"class_logit", "channel", "neuron", "direction"},
    refused={"class_prob": _NO_UNIT.format("a probability (a softmax over all logits)"),
             "margin": _NO_UNIT.format("a margin (a difference against the runner-up)"),
             "region": _NO_UNIT.format("a region of a dense output"),
             "custom": _NO_UNIT.format("an arbitrary function")},
    many="one relevance pass per target: call it once per target",
    predicted="target is required: the classes to explain, as given")
_TARGETS = {"deeplift": _PROPAGATION, "deeplift_shap": _PROPAGATION, "lrp": _PROPAGATION}

_PROBE = dict(needs_probe=True)
_CHUNK = dict(chunk_option="chunk_size")
for _m in (
    Method("saliency", saliency, paper="Simonyan et al. 2014", signed=False, channel_reduce="max_abs", captum="Saliency"),
    Method("gradient_x_input", gradient_x_input, paper="Shrikumar et al. 2016", label="gradient\nx input", captum="InputXGradient"),
    Method("guided_backprop", guided_backprop, paper="Springenberg et al. 2015", label="guided\nbackprop", channel_reduce="max_abs",
           captum="GuidedBackprop"),
    Method("deconvnet", deconvnet, paper="Zeiler & Fergus 2014", channel_reduce="max_abs", captum="Deconvolution"),
    Method("smoothgrad", smoothgrad, paper="Smilkov et al. 2017", label="SmoothGrad", needs_key=True, signed=False,
           channel_reduce="max_abs", captum="NoiseTunnel(Saliency)", **_CHUNK,
           defaults=dict(n_samples=50, sigma=0.15), quick=dict(n_samples=3, sigma=0.1)),
    Method("integrated_gradients", integrated_gradients, paper="Sundararajan et al. 2017", label="Integrated\nGradients",
           captum="IntegratedGradients", **_CHUNK,
           defaults=dict(n_steps=64), quick=dict(n_steps=4)),
    Method("grad_cam", grad_cam, paper="Selvaraju et al. 2017", kind="layer", label="Grad-CAM", signed=False,
           captum="LayerGradCam", **_PROBE),
    Method("grad_cam_plus_plus", grad_cam_plus_plus, paper="Chattopadhay et al. 2018", kind="layer", label="Grad-CAM++",
           signed=False, **_PROBE),
    Method("score_cam", score_cam, paper="Wang et al. 2020", kind="layer", label="Score-CAM", signed=False, **_PROBE,
           **_CHUNK, quick=dict(chunk_size=None)),
    Method("guided_grad_cam", guided_grad_cam, paper="Selvaraju et al. 2017", label="Guided\nGrad-CAM",
           channel_reduce="max_abs", captum="GuidedGradCam", **_PROBE),
    Method("occlusion", _occlusion.occlusion, paper="Zeiler & Fergus 2014", kind="occlusion", label="occlusion",
           captum="Occlusion", **_CHUNK,
           defaults=dict(window=(4, 4), stride=(2, 2)), quick=dict(window=(4, 4), stride=(3, 3))),
    Method("hires_cam", hires_cam, paper="Draelos & Carin 2020", kind="layer", label="HiResCAM", signed=False, **_PROBE),
    Method("xgrad_cam", xgrad_cam, paper="Fu et al. 2020", kind="layer", label="XGrad-CAM", signed=False, **_PROBE),
    Method("layer_cam", layer_cam, paper="Jiang et al. 2021", kind="layer", label="LayerCAM", signed=False, **_PROBE),
    Method("eigen_cam", eigen_cam, paper="Muhammad & Yeasin 2020", kind="layer", label="EigenCAM", signed=False, **_PROBE),
    Method("ablation_cam", ablation_cam, paper="Desai & Ramaswamy 2020", kind="layer", label="Ablation-CAM", signed=False,
           **_PROBE, **_CHUNK, quick=dict(chunk_size=None)),
    Method("full_grad", full_grad, paper="Srinivas & Fleuret 2019", kind="layer", label="FullGrad", signed=False, **_PROBE),
    Method("gradient_shap", gradient_shap, paper="Lundberg & Lee 2017", label="GradientSHAP", needs_key=True,
           captum="GradientShap",
           **_CHUNK, defaults=dict(n_samples=50),
           quick=dict(n_samples=3, stdevs=0.1)),
    Method("feature_ablation", feature_ablation, paper="Captum (Kokhlikyan et al. 2020)", kind="occlusion", label="feature\nablation",
           captum="FeatureAblation", **_CHUNK, quick=dict(grid=(7, 7))),
    Method("shapley_sampling", shapley_sampling, paper="Castro et al. 2009", kind="occlusion", label="Shapley\nsampling",
           needs_key=True, captum="ShapleyValueSampling", **_CHUNK,
           quick=dict(n_samples=2, grid=(7, 7))),
    Method("kernel_shap", kernel_shap, paper="Lundberg & Lee 2017", kind="occlusion", label="KernelSHAP", needs_key=True,
           captum="KernelShap", **_CHUNK, quick=dict(n_samples=20, grid=(7, 7))),
    Method("lime", lime, paper="Ribeiro et al. 2016", kind="occlusion", label="LIME", needs_key=True, captum="Lime", **_CHUNK,
           quick=dict(n_samples=20, grid=(7, 7), lasso_steps=50)),
    Method("rise", rise, paper="Petsiuk et al. 2018", kind="occlusion", label="RISE", needs_key=True, signed=False, **_CHUNK,
           quick=dict(n_masks=8)),
    Method("deeplift", deeplift, paper="Shrikumar et al. 2017", label="DeepLIFT", captum="DeepLift"),
    Method("deeplift_shap", deeplift_shap, paper="Lundberg & Lee 2017", label="DeepLIFT\nSHAP", needs_key=True,
           captum="DeepLiftShap", **_CHUNK,
           defaults=dict(n_baselines=16), quick=dict(n_baselines=2)),
    Method("lrp", lrp, paper="Bach et al. 2015; Montavon et al. 2019", label="LRP", captum="LRP",
           defaults=dict(composite="epsilon_plus")),
):
    register(_dc.replace(_m, no_layer=_NO_LAYER.get(_m.name, ""),
                         targets=_TARGETS.get(_m.name, _m.targets)))
