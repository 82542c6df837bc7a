"""The propagation rule tables (`jaxviz.propagation`): the generated primitive list, each
primitive Keras and Equinox models lower to against an independent value (LRP-0 on a
linear net = gradient x input; DeepLIFT on a linear net = gradient x (x - x0); one
nonlinearity by hand), softmax attention pooling and log_softmax inside a model,
objective targets (a neuron's DeepLIFT completeness, LRP-0 of a neuron), the refusals,
and the error for an unsupported primitive naming the user's layer."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxviz import attribution as A
from jaxviz.core import interpret
from jaxviz.core import objectives as O
from jaxviz.core import probe as probe_lib
from jaxviz.propagation import lrp_composites as LC
from jaxviz.propagation import lrp_rules as LR
from jaxviz.propagation import table
from jaxviz.propagation.program import NoRuleError

KEY = jax.random.key(11)
EPS = LR.Epsilon(1e-9)
EXACT = LC.Composite(conv=EPS, dense=EPS, pool=EPS, stabilizer=1e-9)  # LRP-0
DOC = Path(__file__).resolve().parents[2] / "docs" / "propagation_primitives.md"


def test_the_primitive_list_in_docs_is_generated_from_the_tables():
    assert DOC.read_text() == table.render(), (
        "docs/propagation_primitives.md is out of date: run "
        "`python -m experiments.tools.propagation_table`")


# ---- linear primitives: LRP-0 = gradient x input, DeepLIFT = gradient x (x - x0) --------

def _leaves(f, *args):
    """The equations of f's program with calls (jnp.pad's jit, ...) inlined."""
    return interpret.leaf_eqns(jax.make_jaxpr(f)(*args))


def _grouped_conv(w, x):  # Keras/Equinox grouped (and depthwise) convolutions
    return lax.conv_general_dilated(x, w["g"], (1, 1), "VALID", feature_group_count=2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _avg_pool(w, x):  # Keras AveragePooling2D / eqx.nn.AvgPool2d: reduce_window_sum / 4
    s = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return s / 4.0


def _batched_dot(w, x):  # per-row weights: a dot_general with a batch dimension
    rows = x.reshape(x.shape[0], x.shape[1], -1)  # (N, H, W*C)
    return jnp.einsum("nhd,hde->nhe", rows, w["b"])


def _transpose_concat_pad(w, x):
    y = jnp.concatenate([x, jnp.transpose(x, (0, 2, 1, 3))], axis=-1)
    return jnp.pad(y, ((0, 0), (1, 0), (0, 1), (0, 0)))


LINEAR = {"grouped_conv": _grouped_conv, "avg_pool": _avg_pool, "batched_dot": _batched_dot,
          "transpose_concat_pad": _transpose_concat_pad}


def _linear_net():
    """x (N, 4, 4, 2) -> every LINEAR body side by side -> flatten, concatenate -> dense to 3
    classes, no biases (one program for all, to keep the test short)."""
    k = jax.random.split(KEY, 3)
    w = {"g": jax.random.normal(k[0], (3, 3, 1, 4)),
         "b": jax.random.normal(k[1], (4, 8, 3))}

    def features(params, x):
        return jnp.concatenate([body(params, x).reshape(x.shape[0], -1)
                                for body in LINEAR.values()], axis=-1)
    n = jax.eval_shape(lambda x: features(w, x), jnp.zeros((1, 4, 4, 2))).shape[1]
    w["d"] = jax.random.normal(k[2], (n, 3)) / np.sqrt(n)
    return (lambda params, x: features(params, x) @ params["d"]), w


def test_linear_primitives_lrp0_is_gradient_x_input_and_deeplift_is_exact():
    fn, w = _linear_net()
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 2))
    x0 = jnp.full((1, 4, 4, 2), 0.25)
    t = jnp.array([0, 2])
    grad = jax.jit(jax.grad(lambda x: fn(w, x)[jnp.arange(2), t].sum()))(x)
    got = A.lrp(fn, w, x, t, composite=EXACT).map
    scale = float(jnp.abs(grad * x).max())
    np.testing.assert_allclose(got, grad * x, rtol=1e-3, atol=1e-5 * scale)
    res = A.deeplift(fn, w, x, t, baselines=x0)
    np.testing.assert_allclose(res.map, grad * (x - x0), rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(res.extras["delta"], 0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_each_linear_primitive_is_in_the_program(name):
    """The bodies lower to the primitives they stand for (the test above covers them)."""
    want = {"grouped_conv": "conv_general_dilated", "avg_pool": "reduce_window_sum",
            "batched_dot": "dot_general", "transpose_concat_pad": "pad"}[name]
    w = {"g": jnp.ones((3, 3, 1, 4)), "b": jnp.ones((4, 8, 3))}
    eqns = _leaves(lambda x: LINEAR[name](w, x), jnp.zeros((1, 4, 4, 2)))
    names = {e.primitive.name for e in eqns}
    assert want in names and (name != "transpose_concat_pad"
                              or {"transpose", "concatenate"} <= names)
    if name == "grouped_conv":
        conv = next(e for e in eqns if e.primitive.name == want)
        assert conv.params["feature_group_count"] == 2
    if name == "batched_dot":
        dot = next(e for e in eqns if e.primitive.name == want)
        assert dot.params["dimension_numbers"][1] != ((), ())  # batch dimensions


# ---- one nonlinearity per hidden unit between two dense layers, by hand ---------------

NONLINEAR = {"logistic": jax.nn.sigmoid, "erf": jax.scipy.special.erf, "tanh": jnp.tanh,
             "max": lambda z: jnp.maximum(z, 0.0),
             "gelu_exact": lambda z: jax.nn.gelu(z, approximate=False)}


def test_each_nonlinearity_matches_lrp_and_deeplift_by_hand():
    """Hidden unit j applies NONLINEAR's j-th function: DeepLIFT's rescale multiplier and
    LRP-0's pass-through, per unit, by hand."""
    acts = list(NONLINEAR.values())
    k1, k2 = jax.random.split(KEY)
    W, v = jax.random.normal(k1, (6, len(acts))), jax.random.normal(k2, (len(acts), 2))

    def act(z):
        return jnp.stack([f(z[:, j]) for j, f in enumerate(acts)], axis=-1)

    def fn(p, x):
        return act(x.reshape(x.shape[0], -1) @ p[0]) @ p[1]

    x = jax.random.normal(jax.random.key(2), (3, 3, 2, 1))
    x0 = 0.3 * jax.random.normal(jax.random.key(3), (3, 3, 2, 1))  # inside x's range
    xf, x0f, Wn = np.asarray(x).reshape(3, -1), np.asarray(x0).reshape(3, -1), np.asarray(W)
    z, z0 = xf @ Wn, x0f @ Wn
    f, f0 = np.asarray(act(jnp.asarray(z))), np.asarray(act(jnp.asarray(z0)))
    vk = np.asarray(v)[:, 1]
    # DeepLIFT rescale: m_hidden = v_k (f(z) - f(z0)) / (z - z0), pulled back through W
    want = (xf - x0f) * ((vk * (f - f0) / (z - z0)) @ Wn.T)
    got = A.deeplift(fn, (W, v), x, 1, baselines=x0).map
    np.testing.assert_allclose(np.asarray(got).reshape(3, -1), want, rtol=1e-4, atol=1e-6)
    # LRP-0: hidden relevance f_j v_jk passes through the activation to z_j, then
    # to the inputs by their contributions x_i W_ij / z_j
    R_z = f * vk
    want = (xf[:, :, None] * Wn[None] / z[:, None, :] * R_z[:, None, :]).sum(-1)
    got = A.lrp(fn, (W, v), x, 1, composite=EXACT).map
    np.testing.assert_allclose(np.asarray(got).reshape(3, -1), want, rtol=1e-3,
                               atol=1e-5 * np.abs(want).max())
    # each function is the primitive it stands for
    prims = {e.primitive.name for e in _leaves(act, jnp.ones((1, len(acts))))}
    assert {"logistic", "erf", "tanh", "max"} <= prims


# ---- softmax attention pooling and log_softmax inside a model ------------------------

class _AttnPool(nnx.Module):
    """conv (no bias) -> softmax attention over positions -> weighted sum -> dense."""

    def __init__(self, rngs, log_softmax: bool = False):
        self.conv = nnx.Conv(1, 4, (3, 3), padding="VALID", use_bias=False, rngs=rngs)
        self.score = nnx.Linear(4, 1, use_bias=False, rngs=rngs)
        self.head = nnx.Linear(4, 3, use_bias=False, rngs=rngs)
        self.log_softmax = log_softmax

    def weights(self, h):
        s = self.score(h).reshape(h.shape[0], -1)  # (N, positions)
        return jax.nn.softmax(s, axis=-1)

    def __call__(self, x):
        h = self.conv(x)
        a = self.weights(h)
        pooled = (a[..., None] * h.reshape(h.shape[0], -1, h.shape[-1])).sum(axis=1)
        out = self.head(pooled)
        return jax.nn.log_softmax(out, axis=-1) if self.log_softmax else out


@pytest.fixture(scope="module")
def attn():
    m = _AttnPool(nnx.Rngs(0))
    x = jax.random.uniform(KEY, (2, 6, 6, 1))
    return m, probe_lib.from_model(m, input_shape=(6, 6, 1)), x


def test_lrp_through_softmax_attention_treats_the_weights_as_constants(attn):
    """LRP-0 through attention pooling equals gradient x input of the same net with the
    attention weights detached (Ali et al. 2022), written here by hand."""
    m, p, x = attn
    t = jnp.array([0, 2])
    Wc, Ws, Wh = m.conv.kernel[...], m.score.kernel[...], m.head.kernel[...]

    @jax.jit
    def detached(x):
        h = lax.conv_general_dilated(x, Wc, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        hs = h.reshape(h.shape[0], -1, h.shape[-1])
        a = lax.stop_gradient(jax.nn.softmax((hs @ Ws)[..., 0], axis=-1))
        return ((a[..., None] * hs).sum(axis=1) @ Wh)[jnp.arange(2), t]

    want = x * jax.jit(jax.grad(lambda x: detached(x).sum()))(x)
    res = A.lrp(p, p.params, x, t, composite=EXACT)
    np.testing.assert_allclose(res.map, want, rtol=1e-3, atol=1e-5 * float(jnp.abs(want).max()))
    np.testing.assert_allclose(res.map.sum(axis=(1, 2, 3)), detached(x), rtol=1e-4)


def test_deeplift_through_softmax_attention_sums_to_delta(attn):
    _, p, x = attn
    x0 = jnp.full((1, 6, 6, 1), 0.3)
    res = A.deeplift(p, p.params, x, [1, 0], baselines=x0)
    out, out0 = jax.jit(p)(p.params, x), jax.jit(p)(p.params, jnp.broadcast_to(x0, x.shape))
    change = out[jnp.arange(2), jnp.array([1, 0])] - out0[jnp.arange(2), jnp.array([1, 0])]
    np.testing.assert_allclose(res.map.sum(axis=(1, 2, 3)), change, rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(change).min()) > 1e-3  # a real change, not 0 = 0


def test_log_softmax_output_passes_relevance_to_the_logits(attn):
    """log_softmax is the logits shifted by constants for relevance (its max and its
    log-sum-exp): the canonizer folds the shifts into the head layer as biases, so LRP of
    log p_k is LRP of the logit z_k (the shift absorbs log p_k - z_k: delta = z_k - log p_k
    on this bias-free net); DeepLIFT still sums to delta."""
    m, p, x = attn
    lp = probe_lib.from_model(_AttnPool(nnx.Rngs(0), log_softmax=True), input_shape=(6, 6, 1))
    z, logp = jax.jit(p)(p.params, x)[:, 1], jax.jit(lp)(lp.params, x)[:, 1]
    want = A.lrp(p, p.params, x, 1, composite=EXACT).map
    res = A.lrp(lp, lp.params, x, 1, composite=EXACT)
    np.testing.assert_allclose(res.map, want, rtol=1e-4, atol=1e-6 * float(jnp.abs(want).max()))
    np.testing.assert_allclose(res.extras["delta"], z - logp, rtol=1e-4)
    res = A.deeplift(lp, lp.params, x, 1)
    np.testing.assert_allclose(res.extras["delta"], 0, atol=1e-4)


# ---- objective targets -----------------------------------------------------------------

class _Small(nnx.Module):
    def __init__(self, rngs, relu: bool = True, bias: bool = True):
        self.conv1 = nnx.Conv(1, 3, (3, 3), padding="VALID", use_bias=bias, rngs=rngs)
        self.conv2 = nnx.Conv(3, 4, (3, 3), padding="VALID", use_bias=bias, rngs=rngs)
        self.head = nnx.Linear(4, 2, use_bias=bias, rngs=rngs)
        self.act = nnx.relu if relu else (lambda h: h)

    def __call__(self, x):
        h = self.act(self.conv2(self.act(self.conv1(x))))
        return self.head(h.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def small():
    p = probe_lib.from_model(_Small(nnx.Rngs(1)), input_shape=(8, 8, 1))
    return p, jax.random.uniform(KEY, (2, 8, 8, 1))


def test_deeplift_of_a_neuron_sums_to_its_change(small):
    p, x = small
    b = jnp.full((1, 8, 8, 1), 0.5)
    res = A.deeplift(p, p.params, x, O.neuron("conv2", 2, 1, 3), baselines=b)
    unit = jax.jit(lambda x: p.run(p.params, x)[1]["conv2"][:, 1, 3, 2])
    change = unit(x) - unit(jnp.broadcast_to(b, x.shape))
    np.testing.assert_allclose(res.map.sum(axis=(1, 2, 3)), change, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.extras["delta"], 0, atol=1e-5)
    # DeepLIFT-SHAP over two baselines: the change from their mean
    bs = jnp.stack([jnp.full((8, 8, 1), 0.5), jnp.full((8, 8, 1), 0.1)])
    res = A.deeplift_shap(p, p.params, x, O.neuron("conv2", 2, 1, 3), baselines=bs)
    mean0 = (unit(jnp.broadcast_to(bs[0], x.shape)) + unit(jnp.broadcast_to(bs[1], x.shape))) / 2
    np.testing.assert_allclose(res.map.sum(axis=(1, 2, 3)), unit(x) - mean0, rtol=1e-4,
                               atol=1e-6)
    # a sum of a channel and a scaled logit: completeness of the combined score
    obj = O.channel("conv1", 1) + 0.5 * O.class_logit(1)
    score = jax.jit(lambda x: (p.run(p.params, x)[1]["conv1"][..., 1].mean(axis=(1, 2))
                               + 0.5 * p(p.params, x)[:, 1]))
    res = A.deeplift(p, p.params, x, obj, baselines=b)
    np.testing.assert_allclose(res.map.sum(axis=(1, 2, 3)),
                               score(x) - score(jnp.broadcast_to(b, x.shape)), rtol=1e-4,
                               atol=1e-6)


def test_lrp0_of_a_neuron_on_a_linear_net_is_its_gradient_x_input():
    p = probe_lib.from_model(_Small(nnx.Rngs(2), relu=False, bias=False),
                             input_shape=(8, 8, 1))
    x = jax.random.normal(KEY, (2, 8, 8, 1))
    unit = jax.jit(lambda x: p.run(p.params, x)[1]["conv2"][:, 2, 1, 3])
    want = x * jax.jit(jax.grad(lambda x: unit(x).sum()))(x)
    res = A.lrp(p, p.params, x, O.neuron("conv2", 3, 2, 1), composite=EXACT)
    np.testing.assert_allclose(res.map, want, rtol=1e-3, atol=1e-5 * float(jnp.abs(want).max()))
    np.testing.assert_allclose(res.extras["delta"], 0, atol=1e-4 * float(jnp.abs(unit(x)).max()))
    # a direction at conv2: sum_c v_c mean(conv2[..., c]), by its gradient x input too
    v = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    d = jax.jit(lambda x: (p.run(p.params, x)[1]["conv2"] @ v).mean(axis=(1, 2)))
    want = x * jax.jit(jax.grad(lambda x: d(x).sum()))(x)
    got = A.lrp(p, p.params, x, O.direction("conv2", v), composite=EXACT).map
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("obj", [O.class_prob(1), O.margin(0),
                                 O.custom(lambda acts: acts["logits"][:, 0] ** 2),
                                 O.channel("conv1", 0) + O.class_prob(1)],
                         ids=["class_prob", "margin", "custom", "sum_with_prob"])
def test_objectives_without_a_unit_share_are_refused(small, obj):
    p, x = small
    for method in (A.lrp, A.deeplift):
        name = method.method_name
        with pytest.raises(ValueError, match=rf"{name} cannot start from target .*"
                                             rf"{obj.name.split(' ')[0]}"):
            method(p, p.params, x, obj)


def test_an_objective_index_out_of_range_is_refused(small):
    p, x = small
    with pytest.raises(ValueError, match="channel 9 is out of range"):
        A.lrp(p, p.params, x, O.neuron("conv2", 9))


# ---- unsupported primitives: the error names the primitive and the user's layer ---------

class _SortsAfterConv(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 2, (3, 3), rngs=rngs)
        self.head = nnx.Linear(2, 2, rngs=rngs)

    def __call__(self, x):
        h = jnp.sort(self.conv(x), axis=-1)  # in the model's own code, between layers
        return self.head(h.mean(axis=(1, 2)))


def test_an_unsupported_primitive_names_the_layer_before_it_and_the_source_line():
    p = probe_lib.from_model(_SortsAfterConv(nnx.Rngs(0)), input_shape=(5, 5, 1))
    x = jnp.ones((1, 5, 5, 1))
    for method, label in ((A.lrp, "LRP"), (A.deeplift, "DeepLIFT")):
        with pytest.raises(NoRuleError, match=rf"{label} has no rule for primitive 'sort' "
                                              rf"after layer 'conv' \(in the model's own "
                                              rf"code, outside its layers\) at "
                                              rf".*test_propagation_rules.py"):
            method(p, p.params, x, 0)


# ---- the canonizer's bias fold through size-1 reshapes and transposes ---------------

def test_a_bias_after_a_size1_reshape_is_folded_as_the_layers_bias():
    """vmap's batching of a per-example conv leaves a reshape that only adds or drops
    size-1 axes between the conv and its bias add: the map must be the one without it,
    where the biases absorb relevance (so the map no longer sums to the logit)."""
    k1, k2, k3, k4, k5 = jax.random.split(KEY, 5)
    w = jax.random.normal(k1, (3, 3, 1, 4)) * 0.5
    b = jax.random.normal(k2, (4,))
    scale = jax.random.uniform(k5, (4,), minval=0.5, maxval=1.5)  # a BatchNorm's scale
    v = jax.random.normal(k3, (36 * 4, 3)) * 0.2
    c = jax.random.normal(k4, (3,))

    def conv(x):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def plain(p, x):
        h = jax.nn.relu(conv(x) * scale + b)
        return h.reshape(x.shape[0], -1) @ v + c

    def reshaped(p, x):
        z = conv(x)[:, None]                                   # (N, 1, H, W, O)
        z = z * scale.reshape(1, 1, 1, 1, 4)
        z = jnp.squeeze(z + b.reshape(1, 1, 1, 1, 4), 1)       # drops the unit axis
        h = jax.nn.relu(z).reshape(x.shape[0], -1)
        y = jnp.expand_dims(h @ v, 1)                          # (N, 1, K)
        return (y + c[None, None]).reshape(x.shape[0], -1)

    x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 1))
    want = A.lrp(plain, None, x, 1, composite=EXACT)
    got = A.lrp(reshaped, None, x, 1, composite=EXACT)
    np.testing.assert_allclose(np.asarray(reshaped(None, x)), np.asarray(plain(None, x)),
                               rtol=1e-5, atol=1e-5)
    scale_ = float(np.abs(np.asarray(want.map)).max())
    np.testing.assert_allclose(np.asarray(got.map), np.asarray(want.map), rtol=0,
                               atol=1e-4 * scale_)
    logit = np.asarray(plain(None, x))[:, 1]
    sums = np.asarray(want.map).reshape(2, -1).sum(-1)
    assert np.abs(sums - logit).max() > 1e-2 * np.abs(logit).max()  # the biases took some


def test_a_batchnorm_behind_a_transpose_is_folded_into_the_conv():
    """A channel-first model running a channels-last conv moves its output back before
    the BatchNorm (inference: subtract, divide, scale, shift per channel): the fold must
    carry through the transposes, giving the map of the same net written channels-last."""
    k1, k2, k3, k4, k5 = jax.random.split(KEY, 5)
    w = jax.random.normal(k1, (3, 3, 1, 4)) * 0.5
    mean, var = jax.random.normal(k2, (4,)), jax.random.uniform(k3, (4,), minval=0.5)
    gamma, beta = jax.random.uniform(k4, (4,), minval=0.5, maxval=1.5), jnp.arange(4.0) / 4
    v = jax.random.normal(k5, (36 * 4, 3)) * 0.2

    def conv(x):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def bn(z, axis):  # z's channels on `axis`
        shape = [1] * z.ndim
        shape[axis] = 4
        r = lambda a: a.reshape(shape)  # noqa: E731
        return (z - r(mean)) / jnp.sqrt(r(var) + 1e-5) * r(gamma) + r(beta)

    def channels_last(p, x):
        return jax.nn.relu(bn(conv(x), 3)).reshape(x.shape[0], -1) @ v

    def channel_first(p, x):
        z = bn(jnp.transpose(conv(x), (0, 3, 1, 2)), 1)       # (N, O, H, W)
        return jax.nn.relu(jnp.transpose(z, (0, 2, 3, 1))).reshape(x.shape[0], -1) @ v

    x = jax.random.uniform(jax.random.key(6), (2, 8, 8, 1))
    np.testing.assert_allclose(np.asarray(channel_first(None, x)),
                               np.asarray(channels_last(None, x)), rtol=1e-5, atol=1e-5)
    want = np.asarray(A.lrp(channels_last, None, x, 1, composite=EXACT).map)
    got = np.asarray(A.lrp(channel_first, None, x, 1, composite=EXACT).map)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))
    unfolded = np.asarray(A.lrp(channel_first, None, x, 1, composite=EXACT,
                                canonize=False).map)
    assert np.abs(unfolded - want).max() > 1e-2 * np.abs(want).max()  # the fold matters
