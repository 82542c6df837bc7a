"""Attribution to a layer (jaxviz.attribution.layer) against computations by hand: the model
after the layer written out with its own submodules (no Probe edits), completeness at the
layer, identities between methods at a layer that is affine in the input, conductance
summed over a layer's units = the pixels' IG, batched = one by one, and the errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import attribution as A
from jaxviz.attribution import layer as L
from jaxviz.attribution import registry
from jaxviz.core import objectives as O
from jaxviz.core import probe as probe_lib


class Tiny(nnx.Module):
    """conv1 (3, SAME) -> relu -> conv2 (4, VALID) -> relu -> pool -> dense1 (8) -> relu ->
    head (3), on 8x8x1; after_* are the model after a layer, written out by hand."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=rngs)
        self.dense1 = nnx.Linear(36, 8, rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.after_conv2(self.conv2(nnx.relu(self.conv1(x))))

    def after_conv2(self, a):
        h = nnx.max_pool(nnx.relu(a), (2, 2), (2, 2)).reshape(a.shape[0], -1)
        return self.after_dense1(self.dense1(h))

    def after_dense1(self, z):
        return self.head(nnx.relu(z))


@pytest.fixture(scope="module")
def tiny():
    m = Tiny(nnx.Rngs(0))
    p = probe_lib.from_model(m, input_shape=(8, 8, 1))
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    return m, p, x, jnp.array([0, 1, 2])


def _pick(logits, y):
    return logits[jnp.arange(logits.shape[0]), y]


def test_activation_and_gradient_x_activation_equal_the_hand_product(tiny):
    m, p, x, y = tiny
    a = m.conv2(nnx.relu(m.conv1(x)))
    np.testing.assert_allclose(L.layer_activation(p, p.params, x, layer="conv2").map, a,
                               rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda a: _pick(m.after_conv2(a), y).sum())(a)
    res = L.layer_gradient_x_activation(p, p.params, x, y, layer="conv2")
    np.testing.assert_allclose(res.map, a * g, rtol=1e-4, atol=1e-6)
    assert np.abs(res.map).max() > 1e-3
    # target=None: the predicted classes, said in extras["target"]
    pred = jnp.argmax(m(x), axis=-1)
    res = L.layer_gradient_x_activation(p, p.params, x, None, layer="conv2")
    np.testing.assert_array_equal(res.extras["target"], pred)
    g = jax.grad(lambda a: _pick(m.after_conv2(a), pred).sum())(a)
    np.testing.assert_allclose(res.map, a * g, rtol=1e-4, atol=1e-6)
    # a channel objective read at the same layer: its gradient there is 1 / (h w) on channel 2
    res = L.layer_gradient_x_activation(p, p.params, x, O.channel("conv2", 2), layer="conv2")
    np.testing.assert_allclose(res.map, a * (jnp.arange(4) == 2) / 36.0, rtol=1e-5, atol=1e-7)


COND = dict(layer="conv2", n_steps=32)


def test_layer_ig_and_conductance_are_complete_at_the_layer(tiny):
    m, p, x, y = tiny
    gap = np.asarray(_pick(m(x), y) - _pick(m(jnp.zeros_like(x)), y))
    ig = L.layer_integrated_gradients(p, p.params, x, y, layer="conv2", n_steps=8)
    np.testing.assert_allclose(ig.map.sum(axis=(1, 2, 3)), gap, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ig.extras["delta"], ig.map.sum(axis=(1, 2, 3)) - gap, atol=1e-5)
    # a left Riemann sum along the curve A(x_a): the gap shrinks as 1 / n_steps
    cd = L.layer_conductance(p, p.params, x, y, **COND)
    np.testing.assert_allclose(cd.extras["delta"], cd.map.sum(axis=(1, 2, 3)) - gap, atol=1e-5)
    assert np.all(np.abs(np.asarray(cd.extras["delta"])) < 0.01 * np.abs(gap))
    assert np.abs(cd.map).max() > 1e-3


def test_at_a_layer_affine_in_the_input_the_paths_coincide(tiny):
    """conv1 is affine in x: the layer path A(b) + a (A(x) - A(b)) is the image of the input
    path, so layer IG = internal influence * (A(x) - A(b)), and the per-image sums of layer
    IG and of layer GradientSHAP are those of the pixel methods (same key, same draws)."""
    m, p, x, y = tiny
    da = m.conv1(x) - m.conv1(jnp.zeros_like(x))
    ig = L.layer_integrated_gradients(p, p.params, x, y, layer="conv1", n_steps=8)
    ii = L.internal_influence(p, p.params, x, y, layer="conv1", n_steps=8)
    np.testing.assert_allclose(ig.map, ii.map * da, rtol=1e-4, atol=1e-6)
    pix = A.integrated_gradients(p, p.params, x, y, n_steps=8)
    np.testing.assert_allclose(ig.map.sum(axis=(1, 2, 3)), pix.map.sum(axis=(1, 2, 3)),
                               rtol=1e-4, atol=1e-6)
    bases = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
    kw = dict(key=jax.random.key(3), baselines=bases, n_samples=6)
    lgs = L.layer_gradient_shap(p, p.params, x, y, layer="conv1", **kw)
    gs = A.gradient_shap(p, p.params, x, y, **kw)
    np.testing.assert_allclose(lgs.map.sum(axis=(1, 2, 3)), gs.map.sum(axis=(1, 2, 3)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lgs.extras["delta"], gs.extras["delta"], atol=1e-5)


@pytest.mark.filterwarnings("ignore::jaxviz.core.result.BlankMapWarning")  # dead units: 0
def test_neuron_conductance_over_a_layers_units_is_the_pixels_ig(tiny):
    _, p, x, y = tiny
    total = sum(L.neuron_conductance(p, p.params, x, y, layer="dense1", neuron=u,
                                     n_steps=8).map for u in range(8))
    ig = A.integrated_gradients(p, p.params, x, y, n_steps=8).map
    np.testing.assert_allclose(total, ig, rtol=1e-4, atol=1e-6)


def test_layer_deeplift_and_lrp_at_a_dense_layer_by_hand(tiny):
    """After dense1: relu -> head. Rescale rule: attr_j = W[j, t] (relu(z_j) - relu(z0_j));
    epsilon rule at the head: R_j = relu(z_j) W[j, t] S / (S + eps sign(S)), S the logit."""
    m, p, x, y = tiny
    feats = lambda v: nnx.max_pool(nnx.relu(m.conv2(nnx.relu(m.conv1(v)))), (2, 2),  # noqa: E731
                                   (2, 2)).reshape(v.shape[0], -1)
    z, z0 = m.dense1(feats(x)), m.dense1(feats(jnp.zeros_like(x)))
    w = m.head.kernel[...][:, y].T  # (N, 8)
    dl = L.layer_deeplift(p, p.params, x, y, layer="dense1")
    np.testing.assert_allclose(dl.map, w * (nnx.relu(z) - nnx.relu(z0)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dl.extras["delta"], 0, atol=1e-5)
    s = _pick(m(x), y)
    lrp = L.layer_lrp(p, p.params, x, y, layer="dense1", composite="epsilon")
    want = nnx.relu(z) * w * (s / (s + 1e-6 * jnp.sign(s)))[:, None]
    np.testing.assert_allclose(lrp.map, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lrp.extras["delta"], lrp.map.sum(1) - s, atol=1e-6)


def test_layer_feature_ablation_by_hand(tiny):
    m, p, x, y = tiny
    z = m.dense1(nnx.max_pool(nnx.relu(m.conv2(nnx.relu(m.conv1(x)))), (2, 2),
                              (2, 2)).reshape(3, -1))
    s = _pick(m(x), y)
    groups = np.array([[0, 0, 1, 1, 2, 2, 3, 3]])  # four groups of two units, baseline 0.5
    per_group = [s - _pick(m.after_dense1(jnp.where(groups == g, 0.5, z)), y) for g in range(4)]
    res = L.layer_feature_ablation(p, p.params, x, y, layer="dense1", layer_baselines=0.5,
                                   layer_mask=groups, chunk_size=3)
    np.testing.assert_allclose(res.map, jnp.stack(per_group, 1)[:, groups[0]], rtol=1e-4,
                               atol=1e-6)


def test_batched_equals_one_by_one(tiny):
    _, p, x, y = tiny
    batch = L.layer_conductance(p, p.params, x, y, **COND)
    for i in range(3):
        one = L.layer_conductance(p, p.params, x[i:i + 1], y[i:i + 1], **COND)
        np.testing.assert_allclose(one.map[0], batch.map[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.extras["delta"][0], batch.extras["delta"][i], atol=1e-6)


def test_a_neuron_is_a_target_of_the_pixel_methods(tiny):
    """Captum's NeuronGradient = saliency(abs=False) with a neuron target: the gradient of
    that unit by hand."""
    m, p, x, _ = tiny
    unit = lambda v: m.conv2(nnx.relu(m.conv1(v)))[:, 2, 3, 1].sum()  # noqa: E731
    res = A.saliency(p, p.params, x, O.neuron("conv2", 1, 2, 3), abs=False)
    np.testing.assert_allclose(res.map, jax.grad(unit)(x), rtol=1e-5, atol=1e-7)
    assert np.abs(res.map).max() > 1e-3


def test_layer_forms_and_errors(tiny):
    _, p, x, y = tiny
    for name, form in L.LAYER_FORMS.items():
        assert registry.get(name).name == name and form.method_name in L.LAYER_METHODS
    # layer= on a pixel method runs its layer form
    np.testing.assert_array_equal(
        A.integrated_gradients(p, p.params, x, y, layer="conv2", n_steps=8).map,
        L.layer_integrated_gradients(p, p.params, x, y, layer="conv2", n_steps=8).map)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        L.layer_gradient_x_activation(p, p.params, x, y, layer="conv9")
    with pytest.raises(ValueError, match="Probe"):
        L.layer_integrated_gradients(lambda pr, v: p(pr, v), p.params, x, y, layer="conv2")
    with pytest.raises(ValueError, match="neuron x 6 is out of range"):
        L.neuron_conductance(p, p.params, x, y, layer="conv2", neuron=(0, 1, 6))
    with pytest.raises(ValueError, match="layer_deeplift cannot explain the target prob 1"):
        L.layer_deeplift(p, p.params, x, O.class_prob(1), layer="conv2")
    with pytest.raises(ValueError, match="layer_mask of shape"):
        L.layer_feature_ablation(p, p.params, x, y, layer="conv2",
                                 layer_mask=np.zeros((1, 1, 1, 3), int))
