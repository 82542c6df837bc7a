"""Attribution to a layer, as Captum's layer family defines it (docs/layer_attribution.md).

    from jaxviz.attribution import layer as L
    res = L.layer_integrated_gradients(probe, probe.params, x, y, layer="conv2")
    res.map                  # (N, h, w, c): conv2's activation shape
    res.extras["delta"]      # (N,) sum(map) - (S(x) - S(b)): completeness at the layer

Every form is `layer_<name>(fn, params, images, target, *, layer, **options) ->
Attribution`, fn a Probe, the map shaped like the layer's activation (neuron_conductance:
like the images), target class indices or an Objective (jaxviz.core.objectives).

    jaxviz                          Captum
    layer_activation                LayerActivation
    layer_gradient_x_activation     LayerGradientXActivation
    layer_integrated_gradients      LayerIntegratedGradients
    layer_conductance               LayerConductance
    internal_influence              InternalInfluence
    layer_gradient_shap             LayerGradientShap
    layer_feature_ablation          LayerFeatureAblation
    layer_deeplift                  LayerDeepLift
    layer_lrp                       LayerLRP
    neuron_conductance              NeuronConductance

Captum's other neuron methods need no code of their own here: a neuron is a target,
`objectives.neuron(layer, c, y, x)`, of the pixel methods (NeuronGradient = saliency with
abs=False, NeuronIntegratedGradients = integrated_gradients, NeuronGuidedBackprop =
guided_backprop, NeuronDeepLift = deeplift, NeuronFeatureAblation = feature_ablation,
NeuronGradientShap = gradient_shap, each with target=neuron(...)). Conductance has its own
definition (a pixel's IG flowing through one unit), so it is `neuron_conductance`.

LAYER_FORMS maps a registered pixel method's name to its layer form, for `layer=` on that
method; LAYER_METHODS names every layer form.
"""
from __future__ import annotations

from types import MappingProxyType

from jaxviz.attribution.layer_basic import (
    layer_activation, layer_feature_ablation, layer_gradient_shap, layer_gradient_x_activation)
from jaxviz.attribution.layer_paths import (
    internal_influence, layer_conductance, layer_integrated_gradients, neuron_conductance)
from jaxviz.attribution.layer_propagation import layer_deeplift, layer_lrp

LAYER_FORMS = MappingProxyType({
    "gradient_x_input": layer_gradient_x_activation,
    "integrated_gradients": layer_integrated_gradients,
    "gradient_shap": layer_gradient_shap,
    "feature_ablation": layer_feature_ablation,
    "deeplift": layer_deeplift,
    "lrp": layer_lrp,
})

LAYER_METHODS = MappingProxyType({f.method_name: f for f in (
    layer_activation, layer_gradient_x_activation, layer_integrated_gradients,
    layer_conductance, internal_influence, layer_gradient_shap, layer_feature_ablation,
    layer_deeplift, layer_lrp, neuron_conductance)})

__all__ = ["LAYER_FORMS", "LAYER_METHODS", *LAYER_METHODS]
