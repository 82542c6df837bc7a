"""DeepLIFT and DeepLIFT-SHAP: closed forms (linear model, one nonlinearity, max pooling,
a product), summation-to-delta on ReLU/max-pool nets, the SHAP mean, and the errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN
from jaxviz.propagation.program import NoRuleError

KEY = jax.random.key(7)


def test_linear_model_equals_gradient_times_difference():
    k1, k2, k3 = jax.random.split(KEY, 3)
    w, b = jax.random.normal(k1, (12, 3)), jax.random.normal(k2, (3,))
    x = jax.random.uniform(k3, (4, 2, 3, 2))

    def fn(params, x):
        return x.reshape(x.shape[0], -1) @ params[0] + params[1]

    t = jnp.array([0, 1, 2, 1])
    wt = w.T[t].reshape(x.shape)
    for base in (None, 0.5, jnp.full((1, 2, 3, 2), 0.25)):
        res = A.deeplift(fn, (w, b), x, t, baselines=base)
        attr, delta = res.map, res.extras["delta"]
        b0 = 0.0 if base is None else base
        np.testing.assert_allclose(attr, wt * (x - b0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(delta, 0, atol=1e-5)


def _mlp(act):
    k1, k2, k3 = jax.random.split(KEY, 3)
    W, c, v = jax.random.normal(k1, (6, 5)), jax.random.normal(k2, (5,)), jax.random.normal(k3, (5,))

    def fn(params, x):
        W, c, v = params
        h = act(x.reshape(x.shape[0], -1) @ W + c)
        return jnp.stack([h @ v, -(h @ v)], axis=-1)
    return fn, (W, c, v)


@pytest.mark.parametrize("act", [jax.nn.relu, jnp.tanh, jax.nn.sigmoid, jax.nn.silu,
                                 lambda z: jnp.maximum(z, 0.3)])
def test_rescale_rule_by_hand(act):
    """One hidden nonlinearity (a call like jax.nn.silu counts as one unit): the multiplier
    of each hidden unit is (f(z) - f(z0)) / (z - z0)."""
    fn, (W, c, v) = _mlp(act)
    x = jax.random.normal(jax.random.key(1), (3, 3, 2, 1))
    x0 = jax.random.normal(jax.random.key(2), (3, 3, 2, 1))
    res = A.deeplift(fn, (W, c, v), x, 0, baselines=x0)
    attr, delta = res.map, res.extras["delta"]
    z, z0 = x.reshape(3, -1) @ W + c, x0.reshape(3, -1) @ W + c
    m_hidden = v * (act(z) - act(z0)) / (z - z0)
    want = (x - x0).reshape(3, -1) * (m_hidden @ W.T)
    np.testing.assert_allclose(np.asarray(attr).reshape(3, -1), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:baselines spans")
def test_max_pool_rule_by_hand():
    """Captum's rule: max(y, y0) - y0 goes to the input's argmax, y - max(y, y0) to the
    reference's, divided by x - x0 there (windows of 2 along a row)."""
    v = jnp.array([1.5, -2.0])

    def fn(params, x):
        pooled = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 1), (1, 1, 2, 1),
                                       "VALID")
        s = pooled.reshape(x.shape[0], -1) @ params
        return jnp.stack([s, s], axis=-1)

    x = jnp.array([1.0, 3.0, 2.0, 0.5]).reshape(1, 1, 4, 1)
    x0 = jnp.array([4.0, 0.0, 0.0, 1.0]).reshape(1, 1, 4, 1)
    attr = np.asarray(A.deeplift(fn, v, x, 0, baselines=x0).map).reshape(-1)
    # window 1: y = 3 (pos 1), y0 = 4 (pos 0): ymax = 4 -> pos 1 gets 0, pos 0 gets 3 - 4
    # window 2: y = 2 (pos 2), y0 = 1 (pos 3): ymax = 2 -> pos 2 gets 2 - 1, pos 3 gets 0
    want = np.array([1.5 * (3 - 4), 0.0, -2.0 * (2 - 1), 0.0])
    np.testing.assert_allclose(attr, want, rtol=1e-6, atol=1e-7)


def test_product_of_two_input_dependent_values_splits_exactly():
    k1, k2 = jax.random.split(KEY)
    P, Q = jax.random.normal(k1, (4, 3)), jax.random.normal(k2, (4, 3))

    def fn(params, x):
        u = x.reshape(x.shape[0], -1)
        s = ((u @ params[0]) * (u @ params[1])).sum(-1)
        return jnp.stack([s, s], axis=-1)

    x, x0 = (jax.random.normal(jax.random.key(i), (2, 2, 2, 1)) for i in (3, 4))
    res = A.deeplift(fn, (P, Q), x, 1, baselines=x0)
    attr, delta = res.map, res.extras["delta"]
    u, u0 = x.reshape(2, -1), x0.reshape(2, -1)
    a, a0, b, b0 = u @ P, u0 @ P, u @ Q, u0 @ Q
    want = (u - u0) * (((b + b0) / 2) @ P.T + ((a + a0) / 2) @ Q.T)
    np.testing.assert_allclose(np.asarray(attr).reshape(2, -1), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(delta, 0, atol=1e-4)


def _biased_cnn():
    m = MnistCNN(rngs=nnx.Rngs(2))
    for i, layer in enumerate((m.conv1, m.conv2, m.dense1, m.preds)):
        layer.bias[...] = 0.1 * jax.random.normal(jax.random.key(i), layer.bias.shape)
    return probe_lib.from_model(m)


def test_summation_to_delta_on_relu_max_pool_nets(resnet_random, digits):
    """attributions sum to f(x) - f(baseline), checked against the model's own logits."""
    x, t = jnp.asarray(digits[0][:3]), jnp.asarray(digits[1][:3])
    b = jax.random.uniform(KEY, x.shape) * 0.3
    for p in (_biased_cnn(), resnet_random):
        for base in (None, b):
            attr = A.deeplift(p, p.params, x, t, baselines=base).map
            b0 = jnp.zeros_like(x) if base is None else base
            forward = jax.jit(p)  # one compiled forward, not the ops one by one
            gap = (forward(p.params, x) - forward(p.params, b0))[jnp.arange(3), t]
            assert float(jnp.abs(gap).min()) > 1e-3
            np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), gap, rtol=1e-3, atol=1e-5)


def test_deeplift_shap_is_the_mean_over_baselines():
    p = _biased_cnn()
    x = jax.random.uniform(KEY, (2, 28, 28, 1))
    bases = jax.random.uniform(jax.random.key(9), (3, 28, 28, 1)) * 0.5
    res = A.deeplift_shap(p, p.params, x, [1, 4], baselines=bases, chunk_size=2)
    attr, delta = res.map, res.extras["delta"]
    each = [A.deeplift(p, p.params, x, [1, 4], baselines=b[None]).map for b in bases]
    np.testing.assert_allclose(attr, sum(each) / 3, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(delta, 0, atol=1e-4)
    # Drawn baselines: a key per image, the same draws for an image alone or in a batch.
    keys = jax.random.split(KEY, 2)
    drawn = A.deeplift_shap(p, p.params, x, [1, 4], key=keys, n_baselines=2).map
    alone = A.deeplift_shap(p, p.params, x[1:], [4], key=keys[1:], n_baselines=2).map
    np.testing.assert_allclose(drawn[1:], alone, rtol=1e-4, atol=1e-7)


class _Normalizer(nnx.Module):
    def __call__(self, h):
        return jnp.sort(h, axis=-1)  # a sort of input-dependent values: no DeepLIFT rule


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(4, 3, rngs=rngs)
        self.norm = _Normalizer()

    def __call__(self, x):
        return self.norm(jax.nn.relu(self.dense(x.reshape(x.shape[0], -1))) + 1.0)


def test_an_op_without_a_rule_is_an_error_naming_it_and_its_layer():
    p = probe_lib.from_model(_Net(nnx.Rngs(0)))
    with pytest.raises(NoRuleError, match=r"DeepLIFT has no rule for primitive 'sort' in "
                                          r"layer 'norm'"):
        A.deeplift(p, p.params, np.ones((1, 2, 2, 1), np.float32), 0)


def test_bad_baselines_are_refused(cnn_random, digits):
    p, x = cnn_random, digits[0][:2]
    with pytest.raises(ValueError, match="baselines must"):
        A.deeplift(p, p.params, x, 0, baselines=np.zeros((3, 5, 5, 1)))
    with pytest.raises(ValueError, match="baselines must"):
        A.deeplift_shap(p, p.params, x, 0, baselines=np.zeros((3, 5, 5, 1)))
    with pytest.raises(ValueError, match="key is required"):
        A.deeplift_shap(p, p.params, x, 0)


def test_one_shared_baseline_runs_its_reference_on_a_batch_of_one(cnn_random, digits):
    """A shared baseline's reference pass is the program traced at batch 1, replayed
    equation by equation; it must equal the baseline repeated per image, also for a
    model whose batch-1 program differs (the replay then falls back to the repeat)."""
    x, t = jnp.asarray(digits[0][:3]), jnp.asarray(digits[1][:3])
    p = cnn_random

    def odd(params, x):  # one more equation at batch 1: the programs do not line up
        return p(params, x * 1.5 if x.shape[0] == 1 else x * 1.0 * 1.5)

    for fn in (p, odd):
        shared = A.deeplift(fn, p.params, x, t, baselines=0.2).map
        repeated = A.deeplift(fn, p.params, x, t, baselines=np.full(x.shape, 0.2, np.float32)).map
        np.testing.assert_allclose(shared, repeated, rtol=1e-5, atol=1e-7)


# ---- reveal-cancel (Shrikumar et al. 2017, section 3.5.3) -------------------------------------

def _min_net(params, x):
    """min(i1, i2) = i1 - relu(i1 - i2), the paper's example, on (N, 1, 2, 1) inputs."""
    u = x.reshape(x.shape[0], 2)
    o = u[:, 0] - jax.nn.relu(u @ params)[:, 0]
    return jnp.stack([o, -o], axis=-1)


@pytest.mark.parametrize("x, base, want", [
    ((3.0, 1.0), (0.0, 0.0), (0.5, 0.5)),   # rescale: (0, 1), all to the smaller input
    ((1.0, 3.0), (0.0, 0.0), (0.5, 0.5)),   # rescale: (1, 0)
    ((3.0, 2.0), (1.0, 0.0), (0.5, 1.5)),   # dz = 0, dz+ = 2, dz- = -2: rescale (0, 2)
])
def test_reveal_cancel_on_the_min_network_by_hand(x, base, want):
    """z = i1 - i2 with z0 = i1_0 - i2_0; dz+ and dz- are the two contributions; e.g. for
    (3, 2) from (1, 0): dy+ = (f(3) - f(1)) / 2 + (f(1) - f(-1)) / 2 = 1.5, dy- = -1.5,
    m+- = 0.75, so relu's share is (1.5, -1.5) and min's attribution (2 - 1.5, 0 + 1.5)."""
    W = jnp.array([[1.0], [-1.0]])
    x, base = (jnp.array(v).reshape(1, 1, 2, 1) for v in (x, base))
    res = A.deeplift(_min_net, W, x, 0, baselines=base, rule="reveal_cancel")
    attr, delta = res.map, res.extras["delta"]
    np.testing.assert_allclose(np.asarray(attr).reshape(-1), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-6)
    rescale = A.deeplift(_min_net, W, x, 0, baselines=base).map
    assert not np.allclose(rescale, attr)


@pytest.mark.filterwarnings("ignore:baselines spans")
def test_reveal_cancel_equals_the_contributions_by_hand_through_a_folded_scale():
    """dense -> * s (mixed signs) + t -> relu -> dense: the reveal-cancel attribution of
    input i is sum_j v_j (c_ij m+_j if c_ij > 0 else c_ij m-_j), c_ij = du_i W_ij s_j."""
    k = jax.random.split(KEY, 6)
    W, v = jax.random.normal(k[0], (6, 5)), jax.random.normal(k[1], (5,))
    s, t = jnp.array([1.5, -0.7, 0.9, -2.0, 1.1]), 0.3 * jax.random.normal(k[2], (5,))

    def fn(params, x):
        W, v = params
        h = jax.nn.relu((x.reshape(x.shape[0], -1) @ W) * s + t)
        return jnp.stack([h @ v, -(h @ v)], axis=-1)

    x, x0 = jax.random.normal(k[3], (3, 3, 2, 1)), jax.random.normal(k[4], (3, 3, 2, 1))
    res = A.deeplift(fn, (W, v), x, 0, baselines=x0, rule="reveal_cancel")
    attr, delta = res.map, res.extras["delta"]
    u, u0 = (np.asarray(a, np.float64).reshape(3, -1) for a in (x, x0))
    Wn, vn, sn, tn = (np.asarray(a, np.float64) for a in (W, v, s, t))
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    c = (u - u0)[:, :, None] * Wn[None] * sn  # (N, I, J)
    zp, zn = np.maximum(c, 0).sum(1), np.minimum(c, 0).sum(1)
    z0 = u0 @ Wn * sn + tn
    yp = (relu(z0 + zp) - relu(z0) + relu(z0 + zp + zn) - relu(z0 + zn)) / 2
    yn = (relu(z0 + zn) - relu(z0) + relu(z0 + zp + zn) - relu(z0 + zp)) / 2
    mp, mn = yp / zp, yn / zn
    want = (vn * (np.maximum(c, 0) * mp[:, None] + np.minimum(c, 0) * mn[:, None])).sum(-1)
    np.testing.assert_allclose(np.asarray(attr).reshape(3, -1), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(delta, 0, atol=1e-4)


def test_reveal_cancel_sums_to_delta_on_relu_max_pool_nets(resnet_random, digits):
    x, t = jnp.asarray(digits[0][:3]), jnp.asarray(digits[1][:3])
    b = jax.random.uniform(KEY, x.shape) * 0.3
    for p in (_biased_cnn(), resnet_random):
        attr = A.deeplift(p, p.params, x, t, baselines=b, rule="reveal_cancel").map
        forward = jax.jit(p)  # one compiled forward, not the ops one by one
        gap = (forward(p.params, x) - forward(p.params, b))[jnp.arange(3), t]
        np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), gap, rtol=1e-3, atol=1e-5)
        rescale = A.deeplift(p, p.params, x, t, baselines=b).map
        assert float(jnp.abs(attr - rescale).max()) > 1e-3 * float(jnp.abs(rescale).max())
    with pytest.raises(ValueError, match="rule must be one of"):
        A.deeplift(p, p.params, x, t, rule="revealcancel")
