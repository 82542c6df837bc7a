"""The Equinox adapter against Equinox's own forward: logits, activations, edits, layout,
BatchNorm state, Grad-CAM by hand."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import attribution, filters
from jaxviz.core import probe as probe_lib

N, SHAPE = 3, (8, 8, 2)


class Net(eqx.Module):
    """(C, H, W) = (2, 8, 8) -> (3,): conv -> relu -> BatchNorm -> conv -> relu -> mean ->
    dropout -> linear. `trunk` and `rest` split it at conv2's output for hand computations."""

    layers: list
    bn: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    drop: eqx.nn.Dropout
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.layers = [eqx.nn.Conv2d(2, 4, 3, key=k1), eqx.nn.Lambda(jax.nn.relu)]
        self.bn = eqx.nn.BatchNorm(4, "batch", mode="ema")
        self.conv2 = eqx.nn.Conv2d(4, 5, 3, padding=1, key=k2)
        self.drop = eqx.nn.Dropout(0.5)
        self.head = eqx.nn.Linear(5, 3, key=k3)

    def trunk(self, x, state):
        for layer in self.layers:
            x = layer(x)
        x, state = self.bn(x, state)
        return self.conv2(x)

    def rest(self, a):
        return self.head(self.drop(jax.nn.relu(a).mean((1, 2)), key=None))

    def __call__(self, x, state):
        return self.rest(self.trunk(x, state)), state


@pytest.fixture(scope="module")
def net():
    # Initialised in one compiled program, not op by op (the suite's time budget).
    model, state = eqx.filter_jit(eqx.nn.make_with_state(Net))(jax.random.key(0))
    # Running statistics away from 0 and 1, so inference mode is visible in the numbers.
    stats = (jnp.linspace(-0.5, 0.5, 4), jnp.linspace(0.5, 2.0, 4))
    state = state.set(model.bn.ema_state_index, stats)
    model = eqx.nn.inference_mode(model)
    x = jnp.asarray(np.random.RandomState(1).uniform(size=(N, *SHAPE)), jnp.float32)
    probe = probe_lib.from_model(model, state, input_shape=SHAPE)
    return model, state, probe, x, _own(model, state, x), _run(probe, x)


@eqx.filter_jit
def _own(model, state, x):
    """Equinox's own forward, batched over NCHW images, and conv2's output (NHWC)."""
    xs = x.transpose(0, 3, 1, 2)
    logits = jax.vmap(lambda xi: model(xi, state)[0])(xs)
    a = jax.vmap(lambda xi: model.trunk(xi, state))(xs)
    return logits, a.transpose(0, 2, 3, 1)


def _run(probe, x, edits=None):
    # Jitted: one compile instead of op-by-op dispatch (the suite's time budget).
    return jax.jit(lambda p, x: probe.run(p, x, edits))(probe.params, x)


def test_logits_and_activations_equal_equinox_own(net):
    model, state, probe, x, own, ran = net
    (logits, a), (out, acts) = own, ran
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["conv2"], a, rtol=1e-5, atol=1e-6)
    first = jax.jit(jax.vmap(model.layers[0]))(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(acts["layers.0"], first, rtol=1e-5, atol=1e-6)
    assert list(probe.layer_shapes(x.shape)) == ["layers.0", "layers.1", "bn", "conv2", "drop",
                                                 "head"]
    assert probe.num_classes == 3 and "channel-first" in repr(probe)


def test_params_in_the_standard_layout(net):
    model, state, probe, _, _, _ = net
    conv = probe_lib.layer_params(probe, probe.params, "layers.0")
    np.testing.assert_array_equal(conv["kernel"], model.layers[0].weight.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(conv["bias"], model.layers[0].bias.reshape(-1))
    np.testing.assert_array_equal(probe.params["params"]["head"]["kernel"], model.head.weight.T)
    np.testing.assert_array_equal(probe.params["batch_stats"]["bn"]["var"],
                                  jnp.linspace(0.5, 2.0, 4))
    tiles = filters.filter_grid(probe, probe.params, "conv2", in_channel=1)
    np.testing.assert_array_equal(tiles, model.conv2.weight[:, 1])
    assert filters.conv_layers(probe, probe.params, (1, *SHAPE)) == ["layers.0", "conv2"]
    other = jax.tree.map(lambda a: a + 1 if eqx.is_inexact_array(a) else a, model)
    assert probe == probe_lib.from_model(other, state, input_shape=SHAPE)  # structure only
    assert probe != probe_lib.from_model(model, state, input_shape=(8, 8, 3))


def test_edit_at_a_layer_changes_the_output_as_by_hand(net):
    model, state, probe, x, own, ran = net
    _, a = own
    scale = jnp.arange(1.0, N + 1.0)[:, None, None, None]  # a batch-wise edit
    out, acts = _run(probe, x, edits={"conv2": lambda v: v * scale + 0.5})
    by_hand = jax.jit(jax.vmap(model.rest))((a * scale + 0.5).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(out, by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["conv2"], a * scale + 0.5, rtol=1e-5, atol=1e-6)


def test_grad_cam_equals_grad_cam_by_hand(net):
    model, state, probe, x, own, ran = net
    _, a = own
    t = jnp.array([0, 2, 1])
    score = lambda a: jax.vmap(model.rest)(a.transpose(0, 3, 1, 2))[jnp.arange(N), t].sum()
    g = jax.jit(jax.grad(score))(a)
    by_hand = jnp.einsum("nhwk,nk->nhw", a, g.mean((1, 2)))  # signed: relu=False
    cam = attribution.grad_cam(probe, probe.params, x, t, layer="conv2", upsample=False,
                               relu=False).map
    np.testing.assert_allclose(cam, by_hand, rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(by_hand).sum()) > 0


def test_a_stateful_model_needs_its_state(net):
    model, state, _, _, _, _ = net
    with pytest.raises(ValueError, match=r"variables: .*eqx.nn.State"):
        probe_lib.from_model(model)
    with pytest.raises(ValueError, match=r"variables: .*eqx.nn.State.*got dict"):
        probe_lib.from_model(model, {"a": 1})


class Keyed(eqx.Module):
    conv: eqx.nn.Conv2d
    drop: eqx.nn.Dropout

    def __call__(self, x, *, key):  # Equinox's convention: a key without a default
        return self.drop(self.conv(x), key=key).mean((1, 2))


def test_a_call_requiring_a_key_runs_in_inference_mode():
    model = eqx.filter_jit(lambda k: Keyed(eqx.nn.Conv2d(2, 3, 3, key=k), eqx.nn.Dropout(0.9)))(
        jax.random.key(4))
    x = jnp.asarray(np.random.RandomState(5).uniform(size=(2, 5, 5, 2)), jnp.float32)
    probe = probe_lib.from_model(model, input_shape=(5, 5, 2))
    no_dropout = eqx.filter_jit(jax.vmap(lambda xi: model.conv(xi).mean((1, 2))))(
        x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(_run(probe, x)[0], no_dropout, rtol=1e-5, atol=1e-6)


class Layers(eqx.Module):
    """Equinox's convolutions and pools in the options the adapter's channels-last forms
    must reproduce (1-D and 3-D ones on reshaped activations): strides, dilation, groups,
    "SAME" and circular padding, no bias, ceil pooling, average pooling."""

    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    c3: eqx.nn.Conv1d
    c4: eqx.nn.Conv3d
    avg: eqx.nn.AvgPool2d

    def __init__(self, key):
        k = jax.random.split(key, 4)
        self.c1 = eqx.nn.Conv2d(2, 6, 3, stride=(2, 1), dilation=(1, 2), padding="SAME",
                                key=k[0])
        self.c2 = eqx.nn.Conv2d(6, 6, 3, groups=3, padding=1, padding_mode="CIRCULAR",
                                use_bias=False, key=k[1])
        self.pool = eqx.nn.MaxPool2d(3, 2, use_ceil=True)
        self.c3 = eqx.nn.Conv1d(6, 4, 2, key=k[2])
        self.c4 = eqx.nn.Conv3d(1, 2, (1, 2, 2), padding=((0, 0), (1, 0), (0, 1)), key=k[3])
        self.avg = eqx.nn.AvgPool2d(2, 1)

    def __call__(self, x):
        h = self.pool(self.c2(jax.nn.relu(self.c1(x))))  # (6, 2, 4)
        h1 = self.c3(h.reshape(6, -1))  # (4, 7)
        h3 = self.c4(h.reshape(1, 6, 2, 4))  # (2, 6, 2, 4)
        h2 = self.avg(h3.reshape(12, 2, 4))  # (12, 1, 3)
        return jnp.concatenate([h1.ravel(), h2.ravel()])


def test_channels_last_convs_and_pools_equal_equinox_own():
    model = Layers(jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (2, *SHAPE))
    probe = probe_lib.from_model(model)
    want = jax.vmap(model)(jnp.transpose(x, (0, 3, 1, 2)))
    assert float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(probe(probe.params, x), want, rtol=1e-5, atol=1e-5)
    # one image alone (occlusion's passes) runs without the batch vmap: the same values
    np.testing.assert_allclose(probe(probe.params, x[:1]), want[:1], rtol=1e-5, atol=1e-5)
    # and its gradient, as the analyses take it
    g = jax.grad(lambda x: probe(probe.params, x).sum())(x)
    g_own = jax.grad(lambda x: jax.vmap(model)(jnp.transpose(x, (0, 3, 1, 2))).sum())(x)
    np.testing.assert_allclose(g, g_own, rtol=1e-5, atol=1e-5)
