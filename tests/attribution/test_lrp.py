"""LRP: each rule against hand-computed contributions, the known identities (LRP-0 ==
gradient x input and conservation on bias-free ReLU nets), z+ signs, the BatchNorm
canonizer, composites and the errors."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import attribution as A
from jaxviz.attribution.lrp import canonized, lrp
from jaxviz.core import probe as probe_lib
from jaxviz.propagation import lrp_composites as LC
from jaxviz.propagation import lrp_rules as LR
from jaxviz.propagation.lrp_trace import LrpFn
from jaxviz.propagation.program import NoRuleError

KEY = jax.random.key(3)
EXACT = LC.Composite(conv=LR.Epsilon(1e-9), dense=LR.Epsilon(1e-9), pool=LR.Epsilon(1e-9),
                     stabilizer=1e-9)


class MLP(nnx.Module):
    """fc1 -> * s + t (folded into fc1) -> relu -> fc2, on (N, 3, 2, 1) images."""

    def __init__(self, rngs):
        k = jax.random.split(KEY, 4)
        self.fc1 = nnx.Linear(6, 5, rngs=rngs)
        self.fc2 = nnx.Linear(5, 3, rngs=rngs)
        self.fc1.bias[...] = 0.3 * jax.random.normal(k[0], (5,))
        self.fc2.bias[...] = 0.3 * jax.random.normal(k[1], (3,))
        self.s = nnx.Variable(jnp.array([1.5, -0.7, 0.9, 2.0, -1.2]))  # mixed signs
        self.t = nnx.Variable(0.2 * jax.random.normal(k[2], (5,)))

    def __call__(self, x):
        h = self.fc1(x.reshape(x.shape[0], -1)) * self.s[...] + self.t[...]
        return self.fc2(nnx.relu(h))


def _stab(z, eps=1e-6):
    return z + np.where(z >= 0, eps, -eps)


def _pos(a):
    return np.maximum(a, 0)


def _neg(a):
    return np.minimum(a, 0)


def _hand_rule(rule, x, W, b, R, lo=0.0, hi=1.0):
    """Relevance of x (I,) for z = x @ W + b (I, J) from R (J,), from the contributions."""
    c = x[:, None] * W
    if rule == "epsilon":
        return (c / _stab(c.sum(0) + b) * R).sum(1)
    if rule == "zplus":
        return (_pos(c) / _stab(_pos(c).sum(0) + _pos(b)) * R).sum(1)
    if rule == "alpha_beta":  # alpha 2, beta 1
        zp, zn = _pos(c).sum(0) + _pos(b), _neg(c).sum(0) + _neg(b)
        return (2 * _pos(c) / _stab(zp) * R - _neg(c) / _stab(zn) * R).sum(1)
    if rule == "gamma":  # gamma 0.25
        z = c.sum(0) + b
        cp, cn = c + 0.25 * _pos(c), c + 0.25 * _neg(c)
        up, dn = cp.sum(0) + b + 0.25 * _pos(b), cn.sum(0) + b + 0.25 * _neg(b)
        return ((z > 0) * cp / _stab(up) * R + (z < 0) * cn / _stab(dn) * R).sum(1)
    if rule == "zbox":
        cb = c - lo * _pos(W) - hi * _neg(W)
        return (cb / _stab(cb.sum(0)) * R).sum(1)
    if rule == "flat":
        return np.full(len(x), (R / _stab(float(len(x)))).sum())
    if rule == "wsquare":
        return (W ** 2 / _stab((W ** 2).sum(0) + b ** 2) * R).sum(1)
    raise AssertionError(rule)


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "alpha_beta", "gamma", "zbox", "flat",
                                  "wsquare"])
def test_rule_matches_hand_computed_contributions(rule):
    """Inputs of both signs, then inputs >= 0 (the rules' short path, same program)."""
    model = MLP(nnx.Rngs(0))
    p = probe_lib.from_model(model)
    mixed = np.asarray(jax.random.normal(jax.random.key(1), (2, 3, 2, 1)), np.float64)
    # The folded first layer: effective weights W s, bias b s + t.
    s, sh = np.asarray(model.s[...], np.float64), np.asarray(model.t[...], np.float64)
    W1 = np.asarray(model.fc1.kernel[...], np.float64) * s
    b1 = np.asarray(model.fc1.bias[...], np.float64) * s + sh
    W2, b2 = (np.asarray(v[...], np.float64) for v in (model.fc2.kernel, model.fc2.bias))
    t = np.array([0, 2])
    for x in (mixed, np.abs(mixed)):
        got = lrp(p, p.params, x, t, composite="epsilon", layer_rules={"fc1": rule}).map
        for i in range(2):
            xi = x[i].reshape(-1)
            a = np.maximum(xi @ W1 + b1, 0)
            z2 = a @ W2 + b2
            r_out = np.zeros(3)
            r_out[t[i]] = z2[t[i]]
            r_hidden = _hand_rule("epsilon", a, W2, b2, r_out)  # relu: fc1's output gets it
            want = _hand_rule(rule, xi, W1, b1, r_hidden)
            np.testing.assert_allclose(np.asarray(got[i]).reshape(-1), want, rtol=2e-4,
                                       atol=2e-6 * np.abs(want).max(), err_msg=rule)


class _TinyConv(nnx.Module):
    """conv1 (2 -> 3, 3x3) -> relu -> conv2 (3 -> 2, 2x2) -> relu -> dense, on 5x5x2."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(2, 3, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(3, 2, (2, 2), padding="VALID", rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)
        for i, layer in enumerate((self.conv1, self.conv2, self.head)):
            layer.bias[...] = 0.3 * jax.random.normal(jax.random.key(10 + i), layer.bias.shape)

    def __call__(self, x):
        h = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
        return self.head(h.reshape(h.shape[0], -1))


def _conv_matrix(kernel, in_hw):
    """The VALID, stride-1 conv with `kernel` (kh, kw, ci, co) on (H, W, ci) inputs as an
    (H*W*ci, OH*OW*co) matrix, written out entry by entry."""
    kh, kw, ci, co = kernel.shape
    (H, W), (OH, OW) = in_hw, (in_hw[0] - kh + 1, in_hw[1] - kw + 1)
    M = np.zeros((H, W, ci, OH, OW, co))
    for oy in range(OH):
        for ox in range(OW):
            M[oy:oy + kh, ox:ox + kw, :, oy, ox, :] = kernel
    return M.reshape(H * W * ci, OH * OW * co)


@pytest.mark.parametrize("rule", ["gamma", "alpha_beta", "zplus"])
def test_conv_rules_match_per_layer_lrp_by_hand(rule):
    """Both convs get the rule: conv1 on inputs of both signs (then >= 0) and conv2 on
    post-ReLU inputs; the hand computation unrolls each conv into its matrix and applies
    the rule to the contributions, layer by layer, in float64."""
    m = _TinyConv(nnx.Rngs(0))
    p = probe_lib.from_model(m, input_shape=(5, 5, 2))
    comp = LC.Composite(conv=LC.as_rule(rule))
    M1 = _conv_matrix(np.asarray(m.conv1.kernel[...], np.float64), (5, 5))
    M2 = _conv_matrix(np.asarray(m.conv2.kernel[...], np.float64), (3, 3))
    b1, b2, bh = (np.tile(np.asarray(v.bias[...], np.float64), n)
                  for v, n in ((m.conv1, 9), (m.conv2, 4), (m.head, 1)))
    Wh = np.asarray(m.head.kernel[...], np.float64)
    mixed = np.asarray(jax.random.normal(jax.random.key(4), (2, 5, 5, 2)), np.float64)
    t = np.array([1, 2])
    for x in (mixed, np.abs(mixed)):
        got = np.asarray(lrp(p, p.params, x, t, composite=comp).map).reshape(2, -1)
        for i in range(2):
            a0 = x[i].reshape(-1)
            a1 = np.maximum(a0 @ M1 + b1, 0)
            a2 = np.maximum(a1 @ M2 + b2, 0)
            r = np.zeros(3)
            r[t[i]] = (a2 @ Wh + bh)[t[i]]
            r = _hand_rule("epsilon", a2, Wh, bh, r)
            r = _hand_rule(rule, a1, M2, b2, r)
            want = _hand_rule(rule, a0, M1, b1, r)
            np.testing.assert_allclose(got[i], want, rtol=2e-4,
                                       atol=2e-6 * np.abs(want).max(), err_msg=rule)


def test_lrp0_equals_gradient_times_input_on_bias_free_relu_nets(cnn_random, resnet_random,
                                                                  digits):
    """Random init leaves every bias zero: both reference nets are bias-free ReLU nets."""
    x, t = digits[0][:2], digits[1][:2]
    for p in (cnn_random, resnet_random):
        assert all(float(jnp.abs(b).max()) == 0 for path, b in
                   jax.tree_util.tree_leaves_with_path(p.params) if "bias" in str(path))
        got = lrp(p, p.params, x, t, composite=EXACT).map
        want = A.gradient_x_input(p, p.params, x, t).map
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * float(jnp.abs(want).max()))


def _relevance_at(p, params, x, t, layer, composite):
    """The LRP relevance of `layer`'s activation: the rules run on the tail of the net
    that starts there (the evaluation above it is constant)."""
    # jit: one compiled program each, not the rules' ops dispatched one by one
    act = jax.jit(lambda params: p.run(params, x)[1][layer])(params)

    def tail(params, a):
        return p.run(params, x, edits={layer: lambda _: a})[0]

    model = LrpFn(tail, LC.resolve(composite))

    def total(a):
        s = model(params, a)[jnp.arange(len(t)), t]
        return (s * jax.lax.stop_gradient(s)).sum()
    return jax.jit(jax.grad(total))(act)


def test_relevance_is_conserved_layer_by_layer(cnn_random, digits):
    x, t = jnp.asarray(digits[0][:2]), jnp.asarray(digits[1][:2])
    p = cnn_random
    logits = jax.jit(p)(p.params, x)[jnp.arange(2), t]
    sums = [lrp(p, p.params, x, t, composite=c).map.sum(axis=(1, 2, 3)) for c in (EXACT, "zplus")]
    for layer in ("conv1", "conv2", "dense1"):
        r = _relevance_at(p, p.params, x, t, layer, EXACT)
        sums.append(r.reshape(2, -1).sum(axis=1))
    for s in sums:
        np.testing.assert_allclose(s, logits, rtol=1e-4)


def test_zplus_maps_are_nonnegative(digits):
    model = A_biased_cnn()
    p = probe_lib.from_model(model)
    # Two digits: the shapes the other tests on this architecture compile z+ for.
    x = jnp.asarray(digits[0][:2])
    logits = jax.jit(p)(p.params, x)
    t = jnp.argmax(logits, axis=1)
    assert bool((logits[jnp.arange(2), t] > 0).all())
    R = lrp(p, p.params, x, t, composite="zplus").map
    assert float(R.min()) >= -1e-7 * float(R.max())
    assert float(R.max()) > 0


def A_biased_cnn():
    """MnistCNN with non-zero biases (z+ must stay >= 0 with them)."""
    from jaxviz.models import MnistCNN
    m = MnistCNN(rngs=nnx.Rngs(1))
    for i, layer in enumerate((m.conv1, m.conv2, m.dense1, m.preds)):
        layer.bias[...] = 0.05 * jax.random.normal(jax.random.key(i), layer.bias.shape)
    return m


class _BN(nnx.Module):
    def __init__(self, rngs, fold=False):
        self.conv1 = nnx.Conv(1, 6, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(6, rngs=rngs)
        self.conv2 = nnx.Conv(6, 8, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8, 4, rngs=rngs)
        self.fold = fold

    def __call__(self, x):
        h = self.conv1(x) if self.fold else self.bn(self.conv1(x))
        return self.head(nnx.relu(self.conv2(nnx.relu(h))).mean(axis=(1, 2)))


def _bn_and_folded():
    """A conv -> BatchNorm net with trained-looking statistics and its hand-folded twin."""
    m = _BN(nnx.Rngs(0))
    k = jax.random.split(KEY, 4)
    m.bn.mean[...] = 0.2 * jax.random.normal(k[0], (6,))
    m.bn.var[...] = jax.random.uniform(k[1], (6,), minval=0.5, maxval=2.0)
    m.bn.scale[...] = jnp.array([1.2, -0.8, 0.5, 1.0, -1.5, 0.9])
    m.bn.bias[...] = 0.1 * jax.random.normal(k[2], (6,))
    m.conv1.bias[...] = 0.1 * jax.random.normal(k[3], (6,))
    f = _BN(nnx.Rngs(0), fold=True)
    for a in ("conv2", "head"):
        setattr(f, a, getattr(m, a))
    g = m.bn.scale[...] / jnp.sqrt(m.bn.var[...] + m.bn.epsilon)
    f.conv1.kernel[...] = m.conv1.kernel[...] * g
    f.conv1.bias[...] = (m.conv1.bias[...] - m.bn.mean[...]) * g + m.bn.bias[...]
    return probe_lib.from_model(m), probe_lib.from_model(f)


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_gamma_box"])
def test_batchnorm_is_folded_into_the_conv_before_it(composite):
    bn, folded = _bn_and_folded()
    x = jax.random.uniform(KEY, (2, 10, 10, 1))
    want = lrp(folded, folded.params, x, [1, 3], composite=composite).map
    got = lrp(bn, bn.params, x, [1, 3], composite=composite).map
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(jnp.abs(want).max()))
    # Unfolded, the BatchNorm passes relevance through: a different map.
    raw = lrp(bn, bn.params, x, [1, 3], composite=composite, canonize=False).map
    assert float(jnp.abs(raw - want).max()) > 1e-3 * float(jnp.abs(want).max())


def test_canonizing_batchnorm_leaves_the_logits_unchanged():
    bn, folded = _bn_and_folded()
    x = jax.random.uniform(KEY, (3, 10, 10, 1))
    want = bn(bn.params, x)
    np.testing.assert_allclose(canonized(bn)(bn.params, x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(folded(folded.params, x), want, rtol=1e-4, atol=1e-5)
    # The rules change the backward only: compiled, the forward is bit for bit the model's.
    # (Dispatched op by op instead, jax 0.12 rounds the two differently in the last bit.)
    lrp_fn = LrpFn(bn, LC.resolve("epsilon_plus"))
    np.testing.assert_allclose(jax.jit(lrp_fn)(bn.params, x), jax.jit(bn)(bn.params, x),
                               rtol=0, atol=0)


class _Normalized(nnx.Module):
    """Input normalization, then conv: ZBox's bounds follow the affine map."""

    def __init__(self, rngs, normalize=True):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)
        self.normalize = normalize

    def __call__(self, x):
        if self.normalize:
            x = (x - 0.5) / 0.25
        return self.head(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


def test_zbox_bounds_follow_input_normalization():
    p = probe_lib.from_model(_Normalized(nnx.Rngs(0)))
    q = probe_lib.from_model(_Normalized(nnx.Rngs(0), normalize=False))
    x = jax.random.uniform(KEY, (2, 8, 8, 1))
    got = lrp(p, p.params, x, [0, 2], composite="epsilon_gamma_box").map
    explicit = LC.COMPOSITES["epsilon_gamma_box"].with_layers({"conv": LR.ZBox(-2.0, 2.0)})
    want = lrp(q, q.params, (x - 0.5) / 0.25, [0, 2], composite=explicit).map
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(jnp.abs(want).max()))


def test_first_layer_rule_goes_to_the_first_conv(cnn_random, digits):
    x, t = digits[0][:2], digits[1][:2]
    p = cnn_random
    named = LC.Composite(conv=LR.ZPlus(), layers=(("conv1", LR.Flat()),))
    np.testing.assert_allclose(lrp(p, p.params, x, t, composite="epsilon_plus_flat").map,
                               lrp(p, p.params, x, t, composite=named).map, rtol=1e-6)
    assert not np.allclose(lrp(p, p.params, x, t, composite="epsilon_plus_flat").map,
                           lrp(p, p.params, x, t, composite="epsilon_plus").map)


class _Gated(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 2, (3, 3), rngs=rngs)
        self.gate = _Gate()
        self.head = nnx.Linear(1, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(self.gate(self.conv(x)).mean(axis=(1, 2)))


class _Gate(nnx.Module):
    def __call__(self, h):
        # two input-dependent operands, neither an elementwise function of the other: no
        # LRP rule (h * tanh(h) would be an activation of h)
        return h[..., :1] * jnp.tanh(h[..., 1:])


def test_an_op_without_a_rule_is_an_error_naming_it_and_its_layer():
    p = probe_lib.from_model(_Gated(nnx.Rngs(0)))
    x = jax.random.uniform(KEY, (1, 6, 6, 1))
    with pytest.raises(NoRuleError, match=r"primitive 'mul' in layer 'gate'"):
        lrp(p, p.params, x, 0)


def test_zbox_without_bounds_is_an_error(cnn_random, digits):
    p = cnn_random
    with pytest.raises(ValueError, match=r"ZBox rule at primitive 'conv_general_dilated' in "
                                         r"layer 'conv2' needs the input's bounds"):
        lrp(p, p.params, digits[0][:1], 0, composite="epsilon",
            layer_rules={"conv2": LR.ZBox()})


def test_bad_options_are_refused(cnn_random, digits):
    p, x = cnn_random, digits[0][:1]
    with pytest.raises(ValueError, match="composite must be one of"):
        lrp(p, p.params, x, 0, composite="nope")
    with pytest.raises(ValueError, match=r"layer_rules\['conv1'\] must be"):
        lrp(p, p.params, x, 0, layer_rules={"conv1": "nope"})
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['conv9'\]; known layers: "
                                         r"\['conv1'"):
        lrp(p, p.params, x, 0, layer_rules={"conv9": "flat"})
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        LR.AlphaBeta(alpha=2.0, beta=2.0)


class _DenseFirst(nnx.Module):
    """A dense layer before the first conv: ZBox (a conv-only first rule) skips it."""

    def __init__(self, rngs):
        self.pre = nnx.Linear(1, 1, rngs=rngs)
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.head = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(self.pre(x))).mean(axis=(1, 2)))


def test_first_layer_rule_goes_to_the_first_layer_of_its_kind():
    p = probe_lib.from_model(_DenseFirst(nnx.Rngs(0)))
    x = jax.random.uniform(KEY, (2, 6, 6, 1))
    gamma_box = LC.COMPOSITES["epsilon_gamma_box"]
    bounded = gamma_box.with_layers({"conv": LR.ZBox(-9.0, 9.0)})
    named = dataclasses.replace(gamma_box, first=None).with_layers({"conv": LR.ZBox(-9.0, 9.0)})
    np.testing.assert_allclose(lrp(p, p.params, x, [0, 1], composite=bounded).map,
                               lrp(p, p.params, x, [0, 1], composite=named).map, rtol=1e-6)
    with pytest.raises(ValueError, match="ZBox rule at primitive 'conv_general_dilated' in "
                                         "layer 'conv' needs the input's bounds"):
        lrp(p, p.params, x, [0, 1], composite="epsilon_gamma_box")


# ---- LayerNorm: the std is a constant (Ali et al. 2022) ----------------------------------

class _LN(nnx.Module):
    """Bias-free dense -> LayerNorm (mixed-sign scale, no bias) -> relu -> dense."""

    def __init__(self, rngs):
        self.fc1 = nnx.Linear(6, 8, use_bias=False, rngs=rngs)
        self.norm = nnx.LayerNorm(8, use_bias=False, rngs=rngs)
        self.fc2 = nnx.Linear(8, 3, use_bias=False, rngs=rngs)
        self.norm.scale[...] = jax.random.normal(KEY, (8,))

    def __call__(self, x):
        return self.fc2(nnx.relu(self.norm(self.fc1(x.reshape(x.shape[0], -1)))))


def test_layernorm_conserves_relevance_and_equals_gradient_x_input_with_the_std_detached():
    m = _LN(nnx.Rngs(0))
    p = probe_lib.from_model(m, input_shape=(3, 2, 1))
    x = jax.random.normal(jax.random.key(5), (3, 3, 2, 1))
    t = jnp.array([0, 1, 2])
    W1, W2 = m.fc1.kernel[...], m.fc2.kernel[...]
    scale, eps = m.norm.scale[...], m.norm.epsilon

    def detached(x):  # the same net written by hand, its std a constant
        h = x.reshape(x.shape[0], -1) @ W1
        std = jax.lax.stop_gradient(jnp.sqrt(h.var(axis=-1, keepdims=True) + eps))
        return nnx.relu((h - h.mean(axis=-1, keepdims=True)) / std * scale) @ W2

    logit = detached(x)[jnp.arange(3), t]
    np.testing.assert_allclose(p(p.params, x)[jnp.arange(3), t], logit, rtol=1e-5)
    want = x * jax.jit(jax.grad(lambda x: detached(x)[jnp.arange(3), t].sum()))(x)
    got = lrp(p, p.params, x, t, composite=EXACT).map
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * float(jnp.abs(want).max()))
    # Conservation through the LayerNorm: the relevance of its input (fc1's output) and of
    # its output both sum to the logit, as does the input map.
    for layer in ("fc1", "norm"):
        r = _relevance_at(p, p.params, x, t, layer, EXACT)
        np.testing.assert_allclose(r.reshape(3, -1).sum(axis=1), logit, rtol=1e-4)
    np.testing.assert_allclose(got.sum(axis=(1, 2, 3)), logit, rtol=1e-4)


class _NormAsData(nnx.Module):
    def __init__(self, rngs):
        self.fc = nnx.Linear(4, 3, rngs=rngs)
        self.mix = _AddNorm()

    def __call__(self, x):
        return self.mix(self.fc(x.reshape(x.shape[0], -1)))


class _AddNorm(nnx.Module):
    def __call__(self, h):
        return h + jnp.sqrt((h * 1.0 + 0.5).sum(-1, keepdims=True) ** 2)  # a norm added to data


def test_a_normaliser_used_as_data_is_an_error():
    p = probe_lib.from_model(_NormAsData(nnx.Rngs(0)), input_shape=(2, 2, 1))
    with pytest.raises(NoRuleError, match=r"primitive 'add' in layer 'mix': it uses a normaliser"):
        lrp(p, p.params, np.ones((1, 2, 2, 1), np.float32), 0)


def test_lrp_runs_on_the_convnext_block_with_its_layernorms():
    from tests.helpers import family_models as fm
    m = fm.convnext_block()
    x = jax.random.uniform(KEY, (2, *m.shape))
    res = lrp(m.probe, m.probe.params, x, [0, 1])
    R, delta = res.map, res.extras["delta"]
    assert R.shape == x.shape and bool(jnp.isfinite(R).all()) and float(jnp.abs(R).max()) > 0
    assert bool(jnp.isfinite(delta).all())


class _Gelu(nnx.Module):
    def __init__(self, rngs, act):
        self.fc1 = nnx.Linear(6, 5, rngs=rngs)
        self.fc2 = nnx.Linear(5, 3, rngs=rngs)
        self.act = act

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(x.reshape(x.shape[0], -1))))


@pytest.mark.parametrize("approximate", [True, False])
def test_an_inline_activation_passes_relevance_like_one_call(approximate):
    """jax.nn.gelu is written inline (x * (1 + tanh(..)) / 2, or x / 2 * erfc(..)): LRP
    must treat it as one elementwise activation of fc1's output, as it treats the same
    function wrapped in one jit call."""
    gelu = functools.partial(jax.nn.gelu, approximate=approximate)
    inline = probe_lib.from_model(_Gelu(nnx.Rngs(0), gelu), input_shape=(3, 2, 1))
    called = probe_lib.from_model(_Gelu(nnx.Rngs(0), jax.jit(gelu)), input_shape=(3, 2, 1))
    x = jax.random.normal(KEY, (2, 3, 2, 1))
    want = lrp(called, called.params, x, [0, 2]).map
    np.testing.assert_allclose(lrp(inline, inline.params, x, [0, 2]).map, want, rtol=1e-5,
                               atol=1e-7 * float(jnp.abs(want).max()))
