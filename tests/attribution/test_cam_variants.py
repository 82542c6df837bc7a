"""The wider CAM set against hand computations on tiny models: HiResCAM, XGrad-CAM,
LayerCAM, EigenCAM, Ablation-CAM and FullGrad (its bias gradients and BatchNorm folding)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxviz import attribution as A
from jaxviz.attribution import cam_variants as CV
from jaxviz.core import probe as probe_lib


class _Tiny(nnx.Module):
    """conv (SAME, biased) -> relu -> global mean -> head: dS/dA has a closed form."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(2, 3, (3, 3), padding="SAME", rngs=rngs)
        self.conv.bias[...] = jnp.array([0.3, -0.2, 0.1])
        self.head = nnx.Linear(3, 4, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def tiny():
    p = probe_lib.from_model(_Tiny(nnx.Rngs(5)))
    x = jax.random.normal(jax.random.key(6), (3, 5, 5, 2))
    t = np.array([0, 3, 1])
    a = np.asarray(p.run(p.params, x)[1]["conv"])  # (3, 5, 5, 3)
    w = np.asarray(probe_lib.layer_params(p, p.params, "head")["kernel"])  # (3, 4)
    g = (a > 0) * w[:, t].T[:, None, None, :] / 25  # d mean(relu(A)) . w / dA
    return p, x, t, a, g, w


def _raw(method, p, x, t, **kw):
    return np.asarray(method(p, p.params, x, t, layer="conv", relu=False, upsample=False, **kw).map)


def test_hires_cam_is_elementwise_gradient_times_activation(tiny):
    p, x, t, a, g, _ = tiny
    hand = (g * a).sum(-1)
    np.testing.assert_allclose(_raw(A.hires_cam, p, x, t), hand, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(A.hires_cam(p, p.params, x, t, layer="conv", upsample=False).map,
                               np.maximum(hand, 0), rtol=1e-5, atol=1e-7)
    # Not Grad-CAM: the gradient is not averaged over positions first.
    assert not np.allclose(hand, np.einsum("nhwk,nk->nhw", a, g.mean((1, 2))), atol=1e-6)


def test_xgrad_cam_weights(tiny):
    p, x, t, a, g, _ = tiny
    weights = (g * a).sum((1, 2)) / (a.sum((1, 2)) + 1e-7)
    hand = np.einsum("nhwk,nk->nhw", a, weights)
    np.testing.assert_allclose(_raw(A.xgrad_cam, p, x, t), hand, rtol=1e-4, atol=1e-7)


def test_layer_cam_weights_by_positive_gradients(tiny):
    p, x, t, a, g, _ = tiny
    assert (g < 0).any() and (g > 0).any()  # the rectification has something to do
    hand = (np.maximum(g, 0) * a).sum(-1)
    np.testing.assert_allclose(_raw(A.layer_cam, p, x, t), hand, rtol=1e-5, atol=1e-7)
    assert not np.allclose(hand, (g * a).sum(-1), atol=1e-6)


def test_eigen_cam_is_the_first_principal_component(tiny):
    p, x, t, a, _, _ = tiny
    got = _raw(A.eigen_cam, p, x, t)
    for i in range(len(x)):
        m = a[i].reshape(25, 3).astype(np.float64)
        m -= m.mean(0)
        _, s, vt = np.linalg.svd(m)
        proj = (m @ vt[0]).reshape(5, 5)
        proj *= np.sign(np.corrcoef(proj.ravel(), a[i].sum(-1).ravel())[0, 1])
        np.testing.assert_allclose(got[i], proj, rtol=1e-4, atol=1e-5 * np.abs(proj).max())
        # the variance it keeps is the top singular value's share
        np.testing.assert_allclose((got[i] ** 2).sum(), s[0] ** 2, rtol=1e-4)
    # class-agnostic: the target does not matter
    np.testing.assert_array_equal(_raw(A.eigen_cam, p, x, (t + 1) % 4), got)


def test_ablation_cam_equals_a_hand_loop_over_channels(tiny):
    p, x, t, a, _, w = tiny
    b = np.asarray(probe_lib.layer_params(p, p.params, "head")["bias"])

    def logit(acts):
        return (np.maximum(acts, 0).mean((1, 2)) @ w + b)[np.arange(len(t)), t]

    base = logit(a)
    weights = np.stack([(base - logit(np.where(np.arange(3) == k, 0.0, a))) / base
                        for k in range(3)], -1)
    hand = np.einsum("nhwk,nk->nhw", a, weights)
    for chunk in (None, 2):
        np.testing.assert_allclose(_raw(A.ablation_cam, p, x, t, chunk_size=chunk), hand,
                                   rtol=1e-4, atol=1e-6)
    shifted = np.stack([(base - logit(np.where(np.arange(3) == k, -1.0, a))) / base
                        for k in range(3)], -1)
    np.testing.assert_allclose(_raw(A.ablation_cam, p, x, t, ablation_value=-1.0),
                               np.einsum("nhwk,nk->nhw", a, shifted), rtol=1e-4, atol=1e-6)


def _psi(m):
    m = m - m.min(axis=(1, 2), keepdims=True)
    return m / (1e-7 + m.max(axis=(1, 2), keepdims=True))


def test_full_grad_matches_hand_computation(tiny):
    p, x, t, a, g, _ = tiny
    params = nnx.to_pure_dict(p.params)

    def plain(x):  # the model in plain jnp, independent of the probe's edits
        z = jax.lax.conv_general_dilated(x, params["conv"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.nn.relu(z + params["conv"]["bias"]).mean((1, 2))
        return (h @ params["head"]["kernel"] + params["head"]["bias"])[np.arange(3), t].sum()

    gx = np.asarray(jax.jit(jax.grad(plain))(x))  # one program, not op by op
    bias = np.asarray(params["conv"]["bias"])
    hand = _psi(np.abs(gx * np.asarray(x))).sum(-1) + _psi(np.abs(g * bias)).sum(-1)
    np.testing.assert_allclose(A.full_grad(p, p.params, x, t).map, hand, rtol=1e-4, atol=1e-5)


class _BNNet(nnx.Module):
    """conv -> BatchNorm -> relu -> conv -> relu -> max-pool -> global mean -> dense:
    piecewise linear, every layer biased."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.conv2 = nnx.Conv(4, 5, (3, 3), rngs=rngs)
        self.head = nnx.Linear(5, 3, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.conv2(nnx.relu(self.bn(self.conv1(x)))))
        return self.head(nnx.max_pool(h, (2, 2), (2, 2)).mean(axis=(1, 2)))


def _bn_net():
    m = _BNNet(nnx.Rngs(1))
    keys = iter(jax.random.split(jax.random.key(2), 8))
    for layer in (m.conv1, m.conv2, m.head):
        layer.bias[...] = 0.3 * jax.random.normal(next(keys), layer.bias.shape)
    m.bn.mean[...] = jax.random.normal(next(keys), (4,))
    m.bn.var[...] = jax.random.uniform(next(keys), (4,), minval=0.5, maxval=2)
    m.bn.scale[...] = jax.random.normal(next(keys), (4,))
    m.bn.bias[...] = jax.random.normal(next(keys), (4,))
    return m


def test_full_gradient_decomposition_sums_to_the_logit():
    """f(x) = dS/dx . x + sum of bias-gradients over every layer (Srinivas & Fleuret,
    piecewise-linear nets): holds only if each layer's bias, BatchNorm's folded running
    statistics included, and each gradient are right."""
    m = _bn_net()
    p = probe_lib.from_model(m)
    x = jax.random.uniform(jax.random.key(3), (4, 10, 10, 1))
    t = jnp.array([0, 1, 2, 1])
    inputs, layers = jax.jit(lambda params: CV.full_gradients(p, params, x, t))(p.params)
    assert sorted(layers) == ["bn", "conv1", "conv2"]
    total = inputs.sum((1, 2, 3)) + sum(v.sum((1, 2, 3)) for v in layers.values())
    total = total + m.head.bias[...][t]  # the dense head's bias is not spatial
    logits = jax.jit(p)(p.params, x)[jnp.arange(4), t]
    np.testing.assert_allclose(total, logits, rtol=1e-4, atol=1e-5)
    without_bn = total - layers["bn"].sum((1, 2, 3))
    assert np.abs(np.asarray(without_bn - logits)).max() > 1e-2  # the BN term matters


def test_implicit_bias_is_the_layer_output_at_zero():
    """A BatchNorm in inference mode maps 0 to its implicit bias (NNX and Linen)."""
    bn = _bn_net().bn
    bn.eval()
    p = probe_lib.from_model(_bn_net())
    found = CV.bias_layers(p, p.params, jnp.zeros((1, 6, 6, 1)))
    np.testing.assert_allclose(found["bn"], bn(jnp.zeros((1, 1, 1, 4)))[0, 0, 0], rtol=1e-5)

    class LinenBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(
                nn.Conv(3, (3, 3), name="conv")(x)).mean((1, 2))

    module = LinenBN()
    v = module.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
    v = jax.tree.map(lambda a: a + 0.5 * jax.random.normal(jax.random.key(a.size), a.shape), v)
    v["batch_stats"]["bn"]["var"] = jnp.abs(v["batch_stats"]["bn"]["var"])
    lp = probe_lib.from_model(module, v)
    found = CV.bias_layers(lp, lp.params, jnp.zeros((1, 6, 6, 1)))
    at_zero = nn.BatchNorm(use_running_average=True, epsilon=1e-3).apply(
        {"params": v["params"]["bn"], "batch_stats": v["batch_stats"]["bn"]}, jnp.zeros((1, 3)))
    np.testing.assert_allclose(found["bn"], at_zero[0], rtol=1e-5)
    np.testing.assert_allclose(found["conv"], v["params"]["conv"]["bias"], rtol=1e-6)


def test_errors(tiny):
    p, x, t, *_ = tiny
    for method in (A.hires_cam, A.eigen_cam, A.ablation_cam, A.full_grad):
        with pytest.raises(ValueError, match="Probe"):
            method(lambda q, x: p(q, x), p.params, x, t)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        A.layer_cam(p, p.params, x, t, layer="nope")
    with pytest.raises(ValueError, match="ablation_value must be a number"):
        A.ablation_cam(p, p.params, x, t, ablation_value="min")
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        A.ablation_cam(p, p.params, x, t, chunk_size=0)
