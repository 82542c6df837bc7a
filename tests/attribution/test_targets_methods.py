"""Targets through the methods: "all" and lists equal one call per target (from one
program), a neuron's saliency is that unit's gradient by hand, None is the predicted
class, CAMs refuse targets below their layer, and layer= reaches the layer forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import attribution as A
from jaxviz import occlusion as Occ
from jaxviz.attribution import layer as L
from jaxviz.core import method as method_lib
from jaxviz.core import objectives as O
from tests.helpers.target_models import conv2_by_hand, tiny

KEY = jax.random.key(0)
# (method, options): a gradient, a path (with a delta), a CAM and a perturbation method
# (with extras), quick. relu=False: the tiny net's CAMs are <= 0 for some classes.
CASES = {
    "saliency": (A.saliency, {}),
    "integrated_gradients": (A.integrated_gradients, dict(n_steps=3)),
    "grad_cam": (A.grad_cam, dict(layer="conv2", relu=False)),
    "occlusion": (Occ.occlusion, dict(window=4, stride=4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_many_targets_equal_one_call_each(name):
    probe, x = tiny()
    fn, opts = CASES[name]
    objs = [O.class_prob(2), O.neuron("conv2", 1, 3, 4)]
    every = fn(probe, probe.params, x, "all", **opts)
    listed = fn(probe, probe.params, x, objs, **opts)
    assert every.map.shape[:2] == (4, 3) and listed.map.shape[:2] == (4, 2)
    for k in range(3):
        one = fn(probe, probe.params, x, k, **opts)
        np.testing.assert_allclose(every.map[:, k], one.map, rtol=1e-5, atol=1e-6)
        for key, v in one.extras.items():  # delta, occlusion's scores: (N, T, ...) too
            np.testing.assert_allclose(every.extras[key][:, k], v, rtol=1e-5, atol=1e-6)
    for j, o in enumerate(objs):
        np.testing.assert_allclose(listed.map[:, j], fn(probe, probe.params, x, o, **opts).map,
                                   rtol=1e-5, atol=1e-6)


def test_neuron_saliency_is_the_units_gradient_by_hand():
    probe, x = tiny()
    got = A.saliency(probe, probe.params, x, O.neuron("conv2", 3, 2, 5), abs=False).map
    want = jax.jit(jax.grad(lambda x: conv2_by_hand(probe.params, x)[:, 2, 5, 3].sum()))(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert np.abs(want).max() > 1e-3


def test_none_is_the_predicted_class():
    probe, x = tiny()
    pred = np.asarray(probe(probe.params, x)).argmax(1)
    res = A.integrated_gradients(probe, probe.params, x, None, n_steps=3)
    np.testing.assert_array_equal(res.extras["target"], pred)
    np.testing.assert_allclose(res.map, A.integrated_gradients(probe, probe.params, x, pred,
                                                               n_steps=3).map, rtol=1e-6)


def test_refusals_name_method_and_target():
    probe, x = tiny()
    with pytest.raises(ValueError, match=r"Grad-CAM explains the target through layer "
                                         r"'conv2'.*reads layer\(s\) \['conv1'\]"):
        A.grad_cam(probe, probe.params, x, O.channel("conv1", 0), layer="conv2")
    with pytest.raises(ValueError, match=r"rise: score='logit' applies to class-index "
                                         r"targets; the objective margin 1"):
        A.rise(probe, probe.params, x, O.margin(1), key=KEY, n_masks=2, score="logit")
    with pytest.raises(ValueError, match=r"occlusion: method='incremental'.*reads layers"):
        Occ.occlusion(probe, probe.params, x, O.channel("conv2", 0), window=4, stride=4,
                      method="incremental")


def test_layer_dispatches_to_the_layer_form(monkeypatch):
    probe, x = tiny()
    calls = []

    def fake_form(fn, params, images, target, *, layer, scale=1.0):
        calls.append((layer, scale))
        return A.Attribution(jnp.full((images.shape[0], 2), scale))

    forms = {**L.LAYER_FORMS, "saliency": fake_form}
    monkeypatch.setattr(method_lib, "_LAYER_FORMS", [lambda: forms])
    res = A.saliency(probe, probe.params, x, 0, layer="conv2", scale=3.0)
    assert calls == [("conv2", 3.0)]
    np.testing.assert_array_equal(res.map, np.full((4, 2), 3.0))
    monkeypatch.undo()  # the real forms: layer= on a method is its layer form, called as is
    via = A.integrated_gradients(probe, probe.params, x, 1, layer="conv2", n_steps=3)
    direct = L.layer_integrated_gradients(probe, probe.params, x, 1, layer="conv2", n_steps=3)
    assert via.map.shape == (4, 8, 8, 5)
    np.testing.assert_allclose(via.map, direct.map, rtol=1e-6)
    with pytest.raises(ValueError, match=r"deconvnet has no layer form.*methods with one"):
        A.deconvnet(probe, probe.params, x, 0, layer="conv2")
    # the propagation methods, which check their own arguments, dispatch the same way
    for name in ("deeplift", "lrp"):
        via = A.get(name)(probe, probe.params, x, 1, layer="conv2")
        direct = L.LAYER_FORMS[name](probe, probe.params, x, 1, layer="conv2")
        assert via.map.shape == (4, 8, 8, 5), name
        np.testing.assert_allclose(via.map, direct.map, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(A.get(name)(probe, probe.params, x, 1, layer=None).map,
                                   A.get(name)(probe, probe.params, x, 1).map, rtol=1e-6)
