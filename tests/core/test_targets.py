"""Targets as objectives (jaxviz.core.targets): each kind's score and gradient against a
hand computation of the same quantity from the raw weights, and every bad index refused
by name."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxviz.core import objectives as O
from jaxviz.core import probe as probe_lib
from jaxviz.core import targets as T


class Tiny(nn.Module):
    """Two tanh convs (smooth, so finite differences are accurate) and a dense head."""

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Conv(3, (3, 3), name="conv1")(x))
        h = jnp.tanh(nn.Conv(4, (3, 3), name="conv2")(h))
        return nn.Dense(5, name="head")(h.reshape(h.shape[0], -1))


def _conv(p, x):
    return jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]


def by_hand(params, x):
    """The same net written from its weights alone: (conv2's output, before its tanh, as
    the Probe records a module's output; logits)."""
    p = params["params"]
    a2 = _conv(p["conv2"], jnp.tanh(_conv(p["conv1"], x)))
    return a2, jnp.tanh(a2).reshape(x.shape[0], -1) @ p["head"]["kernel"] + p["head"]["bias"]


@pytest.fixture(scope="module")
def tiny():
    model = Tiny()
    x = jax.random.uniform(jax.random.key(1), (3, 6, 6, 1))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    probe = probe_lib.from_model(model, variables, input_shape=(6, 6, 1))
    return probe, variables, x


def _grad(probe, params, x, target):
    t = T.resolve(probe, params, x, target)
    return jax.jit(jax.grad(lambda x: T.score_fn(probe, t, fast=False)(params, x).sum()))(x)


def test_neuron_gradient_by_hand_and_finite_differences(tiny):
    probe, params, x = tiny
    g = _grad(probe, params, x, O.neuron("conv2", 2, 1, 4))
    want = jax.jit(jax.grad(lambda x: by_hand(params, x)[0][:, 1, 4, 2].sum()))(x)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)
    assert np.abs(want).max() > 1e-3  # the unit does depend on the input
    # Central differences in float64 numpy around image 0, pixel by pixel.
    x64 = np.asarray(x, np.float64)
    f = jax.jit(lambda x: by_hand(params, x)[0][:, 1, 4, 2])
    eps = 1e-3
    for (i, j) in ((0, 3), (2, 5), (4, 1)):
        up, dn = x64.copy(), x64.copy()
        up[0, i, j, 0] += eps
        dn[0, i, j, 0] -= eps
        fd = (np.asarray(f(jnp.float32(up)))[0] - np.asarray(f(jnp.float32(dn)))[0]) / (2 * eps)
        np.testing.assert_allclose(g[0, i, j, 0], fd, rtol=2e-2, atol=2e-4)


def test_class_prob_gradient_is_the_softmax_gradient(tiny):
    probe, params, x = tiny
    k = 3
    g = _grad(probe, params, x, O.class_prob(k))
    z = jax.jit(by_hand)(params, x)[1]
    p = jax.nn.softmax(z)
    dz = jax.jit(jax.jacrev(lambda x: by_hand(params, x)[1].sum(0)))(x)  # (K, N, H, W, C)
    # d p_k / dz_j = p_k (delta_kj - p_j), chained with dz_j / dx by hand.
    w = p[:, k:k + 1] * ((jnp.arange(5) == k) - p)  # (N, K)
    want = jnp.einsum("nj,jnhwc->nhwc", w, dz)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-8)


def test_margin_and_region_by_hand(tiny):
    probe, params, x = tiny
    z = np.asarray(jax.jit(by_hand)(params, x)[1])
    t = T.resolve(probe, params, x, O.margin(2))
    got = np.asarray(t.score(jnp.asarray(z), {}))
    others = np.delete(z, 2, axis=1)
    np.testing.assert_allclose(got, z[:, 2] - others.max(1), rtol=1e-6)
    dense = np.random.default_rng(0).normal(size=(3, 4, 5, 2)).astype(np.float32)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:] = True
    r = O.region(mask, k=1)(jnp.asarray(dense), {})
    np.testing.assert_allclose(r, dense[:, 1:3, 2:, 1].sum((1, 2)), rtol=1e-5)


def test_target_forms(tiny):
    probe, params, x = tiny
    a2, z = (np.asarray(a) for a in jax.jit(by_hand)(params, x))
    pred = T.resolve(probe, params, x, None)
    np.testing.assert_array_equal(pred.classes, z.argmax(1))
    np.testing.assert_allclose(pred.score(jnp.asarray(z), {}), z.max(1), rtol=1e-6)
    per = T.resolve(probe, params, x, [4, 0, 1])
    np.testing.assert_allclose(per.score(jnp.asarray(z), {}), z[[0, 1, 2], [4, 0, 1]])
    every = T.resolve(probe, params, x, "all")
    assert every.count == 5 and every.names[4] == "class 4" and not every.needs_acts
    np.testing.assert_allclose(every.score(jnp.asarray(z), {}), z, rtol=1e-6)
    # Mixed forms in one list: a Switch over the forms, each column its own objective.
    objs = [O.class_logit(1), O.channel("conv2", 3), 0.5 * O.margin(0)]
    mixed = T.resolve(probe, params, x, objs)
    logits, acts = jax.jit(probe.run)(params, x)
    cols = jax.jit(mixed.score)(logits, acts)
    assert cols.shape == (3, 3) and mixed.needs_acts
    for j, o in enumerate(objs):
        np.testing.assert_allclose(cols[:, j], o(logits, acts), rtol=1e-6)
    np.testing.assert_allclose(cols[:, 1], a2[..., 3].mean((1, 2)),
                               rtol=1e-5)
    unit = mixed.unit(jax.tree.map(lambda a: a[1], mixed.args))
    np.testing.assert_allclose(unit.score(logits, acts), cols[:, 1], rtol=1e-6)


@pytest.mark.parametrize("target, match", [
    (7, r"\[0, 5\).*\[7\]"),
    ([1, 9, 2], r"\[0, 5\).*\[9\]"),
    (O.class_logit(5), r"class index 5 is out of range.*5 classes"),
    (O.channel("conv2", 4), r"channel 4 is out of range: layer 'conv2' has 4 channels"),
    (O.neuron("conv1", 0, 6, 0), r"neuron y 6 is out of range: layer 'conv1' has height 6"),
    (O.channel("nope", 0), r"unknown layer 'nope'; known layers"),
    (O.direction("conv2", np.ones(3)), r"direction for layer 'conv2' must have shape \(4,\)"),
    (O.region(np.ones((6, 6)), k=0), r"region needs a dense model output"),
    (O.custom(lambda acts: acts["conv2"][:, 0, 0, :]), r"one value per image, shape \(3,\)"),
    ("every", r"'all'"),
    ([O.class_logit(0), 1], r"all class indices.*or all objectives"),
])
def test_bad_targets_are_refused_by_name(tiny, target, match):
    probe, params, x = tiny
    with pytest.raises(ValueError, match=match):
        T.resolve(probe, params, x, target)


def test_layer_targets_need_a_probe(tiny):
    probe, params, x = tiny
    with pytest.raises(ValueError, match=r"neuron x must be >= 0 \(None for the centre\)"):
        O.neuron("conv1", 0, 0, -3)
    with pytest.raises(ValueError, match=r"reads layer\(s\) \['conv2'\]: pass a.*Probe"):
        T.resolve(lambda p, x: probe(p, x), params, x, O.channel("conv2", 0))
    plain = T.resolve(lambda p, x: probe(p, x), params, x, O.margin(1))  # no layers: fine
    assert not plain.needs_acts
