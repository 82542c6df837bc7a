"""The Keras 3 adapter against Keras' own forward: Sequential, functional and subclassed
models, layers by Keras name, edits, Grad-CAM by hand, a .keras file."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import attribution, cli, registry, train
from jaxviz.core import probe as probe_lib
from jaxviz.core.adapters.keras import keras_module

keras = keras_module()
L = keras.layers
N, SHAPE = 3, (8, 8, 1)


def _seed_like():
    """The seed's CNN, shrunk: Conv 4 -> Conv 6 -> MaxPool -> Dropout -> Flatten -> Dense 8
    -> Dropout -> Dense 3 "preds" (softmax, as the seed has it)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(SHAPE), L.Conv2D(4, 3, activation="relu", name="conv1"),
        L.Conv2D(6, 3, activation="relu", name="conv2"), L.MaxPooling2D(2), L.Dropout(0.25),
        L.Flatten(), L.Dense(8, activation="relu"), L.Dropout(0.5),
        L.Dense(3, activation="softmax", name="preds")])


def _functional():
    """conv -> BatchNorm -> [conv] + skip -> global mean -> dense, BN statistics set."""
    keras.utils.set_random_seed(1)
    inp = keras.Input(SHAPE)
    h = L.Conv2D(4, 3, padding="same", name="stem")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Add(name="add")([h, L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)])
    model = keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(h)))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-0.3, 0.3, 4))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 4))
    return model


class Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(3, 3, name="conv")
        self.block = keras.Sequential([L.Dense(5, activation="tanh", name="inner")], name="block")
        self.out = L.Dense(2, name="out")

    def call(self, x):
        return self.out(self.block(keras.ops.mean(self.conv(x), axis=(1, 2))))


@pytest.fixture(scope="module")
def x():
    return jax.random.uniform(jax.random.key(2), (N, *SHAPE))


@pytest.fixture(scope="module")
def seq():
    model = _seed_like()
    return model, probe_lib.from_model(model)


def _logits(model, a, start):
    """Keras' own layers from `start` on applied to `a`, the last Dense without its softmax
    (what the Probe explains: logits)."""
    for layer in model.layers[start:-1]:
        a = layer(a, training=False)
    head = model.layers[-1]
    return a @ head.kernel.value + head.bias.value


def _upto(model, name):
    """Keras' own intermediate output: a model from the input to layer `name`."""
    return keras.Model(model.inputs, model.get_layer(name).output)


def test_sequential_logits_and_activations_equal_keras_own(seq, x):
    model, probe = seq
    out, acts = probe.run(probe.params, x)
    # The softmax head's logits: softmax of them is Keras' own output.
    np.testing.assert_allclose(jax.nn.softmax(out), model(x, training=False), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(out, _logits(model, x, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(probe)(probe.params, x), out, rtol=1e-5, atol=1e-6)
    for name in ("conv1", "conv2", "flatten"):
        np.testing.assert_allclose(acts[name], _upto(model, name)(x), rtol=1e-5, atol=1e-6)
    assert "softmax left out" in repr(probe)
    assert probe == probe_lib.from_model(model) and hash(probe) == hash(probe_lib.from_model(model))
    assert list(probe.layer_shapes(x.shape))[:3] == ["conv1", "conv2", "max_pooling2d"]
    assert probe.input_shape == SHAPE and probe.num_classes == 3
    k = probe_lib.layer_params(probe, probe.params, "conv2")["kernel"]
    np.testing.assert_array_equal(k, model.get_layer("conv2").kernel.value)


def test_functional_with_batchnorm_and_a_skip(x):
    model = _functional()
    probe = probe_lib.from_model(model)
    out, acts = probe.run(probe.params, x)
    np.testing.assert_allclose(out, model(x, training=False), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["add"], _upto(model, "add")(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probe.params["batch_stats"]["bn"]["var"],
                               np.linspace(0.5, 2.0, 4), rtol=1e-6)
    assert set(probe.params["params"]["bn"]) == {"scale", "bias"}


def test_subclassed_model_names_nested_layers(x):
    model = Sub()
    model(x)
    probe = probe_lib.from_model(model, input_shape=SHAPE)
    out, acts = probe.run(probe.params, x)
    np.testing.assert_allclose(out, model(x), rtol=1e-5, atol=1e-6)
    assert list(acts) == ["conv", "block.inner", "block", "out"]
    np.testing.assert_allclose(acts["conv"], model.conv(x), rtol=1e-5, atol=1e-6)


def test_edit_at_a_layer_changes_the_output_as_by_hand(seq, x):
    model, probe = seq
    a = _upto(model, "conv2")(x)
    scale = jnp.arange(1.0, N + 1.0)[:, None, None, None]
    out, _ = probe.run(probe.params, x, edits={"conv2": lambda v: v * scale - 0.1})
    np.testing.assert_allclose(out, _logits(model, a * scale - 0.1, 2), rtol=1e-5, atol=1e-6)


def test_grad_cam_equals_grad_cam_by_hand(seq, x):
    model, probe = seq
    a = jnp.asarray(_upto(model, "conv2")(x))
    t = jnp.array([2, 0, 1])

    def score(a):
        return _logits(model, a, 2)[jnp.arange(N), t].sum()
    g = jax.jit(jax.grad(score))(a)  # jitted: one compile, not op-by-op dispatch
    by_hand = jnp.maximum(jnp.einsum("nhwk,nk->nhw", a, g.mean((1, 2))), 0)
    cam = attribution.grad_cam(probe, probe.params, x, t, layer="conv2", upsample=False).map
    np.testing.assert_allclose(cam, by_hand, rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(by_hand).sum()) > 0


def test_a_keras_file_loads_as_a_model_spec(seq, x, tmp_path):
    model, _ = seq
    path = tmp_path / "seed.keras"
    model.save(path)
    built = registry.build(str(path))
    probe = registry.to_probe(built)
    assert built.input_shape == SHAPE and built.num_classes == 3
    np.testing.assert_allclose(probe(probe.params, x), _logits(model, x, 0),
                               rtol=1e-5, atol=1e-6)
    out, data = tmp_path / "figs", tmp_path / "three.npz"  # three classes, as the model
    rng = np.random.RandomState(0)
    np.savez(data, x=rng.randint(0, 256, (30, *SHAPE)).astype(np.uint8), y=np.arange(30) % 3)
    # The command line takes the file with no checkpoint.
    assert cli.main(["summary", "--model", str(path), "--data", f"npz:{data}", "--out",
                     str(out), "--quiet"]) == 0
    assert "preds (Dense)" in (out / "summary.txt").read_text()


def test_refusals(seq, monkeypatch):
    with pytest.raises(ValueError, match="not built"):
        probe_lib.from_model(keras.Sequential([L.Dense(2)]))
    with pytest.raises(ValueError, match=r"fit: jaxviz trains Flax models.*model\.fit"):
        train.fit(train.TrainConfig(epochs=1), None, model=seq[0])
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match="'torch' backend.*KERAS_BACKEND=jax"):
        keras_module()
