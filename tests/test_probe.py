import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz.core import checks, probe
from jaxviz.models import MnistCNN, ResidualCNN, count_params


def test_mnist_cnn_has_the_seed_parameter_count():
    model = MnistCNN(rngs=nnx.Rngs(0))
    assert count_params(nnx.state(model, nnx.Param)) == 1_199_882


def test_residual_net_runs_on_mnist_and_rgb_shapes():
    module = ResidualCNN(width=8)
    for shape in ((2, 28, 28, 1), (2, 32, 32, 3)):
        v = module.init(jax.random.key(0), jnp.zeros(shape))
        assert module.apply(v, jnp.ones(shape)).shape == (2, 10)


@pytest.mark.parametrize("fixture,layers", [
    ("cnn_random", ["conv1", "conv2", "dropout1", "dense1", "dropout2", "preds"]),
    ("resnet_random", ["stem", "block1_conv1", "block1_conv2", "down2", "block2_conv1",
                       "block2_conv2", "head"]),
])
def test_probe_names_layers_and_is_pure(request, fixture, layers, digits):
    p = request.getfixturevalue(fixture)
    x = jnp.asarray(digits[0][:3])
    assert list(p.layer_shapes(x.shape)) == layers
    logits, acts = p.run(p.params, x)
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(jax.jit(p)(p.params, x), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(acts[layers[-1]], logits)


def test_probe_activation_matches_an_independent_convolution(cnn_random, digits):
    x = jnp.asarray(digits[0][:2])
    _, acts = cnn_random.run(cnn_random.params, x)
    w = probe.layer_params(cnn_random, cnn_random.params, "conv1")
    manual = jax.lax.conv_general_dilated(x, w["kernel"], (1, 1), "VALID",
                                          dimension_numbers=("NHWC", "HWIO", "NHWC")) + w["bias"]
    np.testing.assert_allclose(acts["conv1"], manual, rtol=1e-5, atol=1e-5)


def test_edits_give_gradients_at_a_layer(cnn_random, digits):
    """d logit / d (conv2 output) via an additive edit equals the VJP through the tail."""
    x = jnp.asarray(digits[0][:2])
    _, acts = cnn_random.run(cnn_random.params, x)
    delta = jnp.zeros_like(acts["conv2"])
    g = jax.grad(lambda d: cnn_random.run(cnn_random.params, x, {"conv2": lambda a: a + d})[0][:, 3].sum())(delta)
    # Independent: replace conv2's output by a variable and differentiate w.r.t. it.
    g2 = jax.grad(lambda a: cnn_random.run(cnn_random.params, x, {"conv2": lambda _: a})[0][:, 3].sum())(acts["conv2"])
    np.testing.assert_allclose(g, g2, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(g).sum()) > 0


def test_probe_runs_in_inference_mode(cnn_random, digits):
    x = jnp.asarray(digits[0][:2])
    a = cnn_random(cnn_random.params, x)
    b = cnn_random(cnn_random.params, x)
    np.testing.assert_array_equal(a, b)  # dropout off: no randomness


def test_probe_errors(cnn_random, digits):
    x = jnp.asarray(digits[0][:1])
    with pytest.raises(ValueError, match=r"unknown layer.*known layers: \['conv1'"):
        cnn_random.run(cnn_random.params, x, {"conv9": lambda a: a})
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        cnn_random.check_layer("nope", x.shape)
    with pytest.raises(ValueError, match="no parameters"):
        probe.layer_params(cnn_random, cnn_random.params, "dropout1")
    with pytest.raises(TypeError, match="nnx.Module or linen.Module"):
        probe.from_model(lambda p, x: x)


def test_tuple_output_needs_a_selector():
    class Two(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            y = self.lin(x.reshape(x.shape[0], -1))
            return y, y * 2

    x = jnp.ones((2, 2, 2, 1))
    unselected = probe.from_model(Two())
    with pytest.raises(ValueError, match="returns a tuple"):
        unselected(unselected.params, x)
    p = probe.from_model(Two(), output=1)
    np.testing.assert_allclose(p(p.params, x), 2 * probe.from_model(Two(), output=0)(p.params, x))


@pytest.mark.parametrize("shape,msg", [
    ((28, 28), r"\(N, H, W, C\)"), ((1, 28, 28), r"\(N, H, W, C\)"),
    ((2, 1, 28, 28), "channel-first"),
])
def test_images_with_wrong_layout_are_refused(shape, msg):
    with pytest.raises(ValueError, match=msg):
        checks.as_images(np.zeros(shape, np.float32))


def test_image_dtype_rules():
    u8 = np.full((1, 2, 2, 1), 255, np.uint8)
    out = checks.as_images(u8)
    assert out.dtype == jnp.float32 and float(out.max()) == 1.0
    assert checks.as_images(np.zeros((1, 2, 2, 1), np.float64)).dtype == jnp.float32
    bad = np.zeros((2, 3, 3, 1), np.float32)
    bad[1, 2, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf value\(s\), the first at index \(1, 2, 0, 0\)"):
        checks.as_images(bad)
    with pytest.raises(ValueError, match="dtype int64"):
        checks.as_images(np.zeros((1, 2, 2, 1), np.int64))


def test_targets():
    np.testing.assert_array_equal(checks.as_targets(3, 2, 10), [3, 3])
    np.testing.assert_array_equal(checks.as_targets([1, 2], 2, 10), [1, 2])
    with pytest.raises(ValueError, match=r"\[0, 10\); got values \[10\]"):
        checks.as_targets([1, 10], 2, 10)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        checks.as_targets([1, 2], 3, 10)
