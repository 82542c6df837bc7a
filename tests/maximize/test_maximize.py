"""Activation maximization: objectives, regularizers, transforms, both loop forms, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import maximize as mx
from jaxviz.maximize import loop as loop_lib

KEY = jax.random.key(0)
STEPS = 12


@pytest.fixture(scope="module")
def classes(cnn_random):
    """All 10 classes of the random MnistCNN, python loop, with snapshots."""
    return mx.all_units(cnn_random, cnn_random.params, key=KEY, steps=STEPS, loop="python",
                        checkpoints=(0, 4, STEPS))


def tv(images):
    x = np.asarray(images)
    return np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum(axis=(1, 2, 3))


def test_shapes_range_and_trace_rises(classes):
    r = classes
    assert r.images.shape == r.best.shape == (10, 28, 28, 1)
    assert r.trace.shape == (10, STEPS) and r.snapshots.shape == (3, 10, 28, 28, 1)
    assert float(r.images.min()) >= 0.0 and float(r.images.max()) <= 1.0
    assert np.all(np.asarray(r.trace[:, -1]) >= np.asarray(r.trace[:, 0]) + 0.1)
    # best is the image of the best step, whose value is the trace's maximum
    np.testing.assert_array_equal(np.asarray(r.best_step), np.asarray(r.trace).argmax(1))
    np.testing.assert_array_equal(np.asarray(r.snapshots[-1]), np.asarray(r.images))


def test_same_key_identical_and_no_retrace(cnn_random, classes):
    before = dict(loop_lib.TRACES)
    again = mx.all_units(cnn_random, cnn_random.params, key=KEY, steps=STEPS, loop="python",
                         checkpoints=(0, 4, STEPS))
    assert loop_lib.TRACES == before, "a second call with the same shapes retraced"
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(classes.images))
    other = mx.all_units(cnn_random, cnn_random.params, key=jax.random.key(1), steps=STEPS,
                         loop="python", checkpoints=(0, 4, STEPS))
    assert not np.array_equal(np.asarray(other.images), np.asarray(classes.images))


def test_python_and_scan_loops_agree(cnn_random, classes):
    s = mx.all_units(cnn_random, cnn_random.params, key=KEY, steps=STEPS, loop="scan",
                     checkpoints=(0, 4, STEPS))
    # same program up to float rounding (XLA compiles convs differently inside a loop body)
    np.testing.assert_allclose(np.asarray(s.trace), np.asarray(classes.trace), atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.images), np.asarray(classes.images), atol=1e-4)
    np.testing.assert_allclose(np.asarray(s.snapshots), np.asarray(classes.snapshots), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(s.snapshots[0]), np.asarray(classes.snapshots[0]))


def test_total_variation_lowers_tv(cnn_random, classes):
    r = mx.all_units(cnn_random, cnn_random.params, key=KEY, steps=STEPS, loop="python",
                     regularizers=(mx.total_variation(20.0),))
    assert np.all(tv(r.images) < tv(classes.images))
    assert np.all(np.asarray(r.trace[:, -1]) > np.asarray(r.trace[:, 0]))


def test_objective_algebra(cnn_random, digits):
    x = digits[0][:2]
    logits, acts = jax.jit(cnn_random.run)(cnn_random.params, x)
    o = 2 * mx.class_logit(3) - mx.channel("conv1", 5) + 0.5 * mx.neuron("conv2", 1, 4, 6)
    want = (2 * logits[:, 3] - acts["conv1"][..., 5].mean(axis=(1, 2))
            + 0.5 * acts["conv2"][:, 4, 6, 1])
    np.testing.assert_allclose(o(logits, acts), want, rtol=1e-5)
    v = np.arange(32, dtype=np.float32)
    np.testing.assert_allclose(mx.direction("conv1", v)(logits, acts),
                               (acts["conv1"] @ v).mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(mx.class_prob(3)(logits, acts),
                               jax.nn.softmax(logits)[:, 3], rtol=1e-5)
    np.testing.assert_allclose(sum([mx.class_logit(1), mx.class_logit(2)])(logits, acts),
                               logits[:, 1] + logits[:, 2], rtol=1e-5)


def test_custom_objective_and_mixed_units(cnn_random):
    """A plain function of the activations dict, mixed with a built-in objective."""
    def conv1_channel(acts, c):
        return acts["conv1"][..., c].mean(axis=(1, 2))

    # a bare function of the activations is an objective too
    units = [mx.custom(conv1_channel, 3), mx.channel("conv1", 3), lambda a: a["logits"][:, 4]]
    r = mx.maximize(cnn_random, cnn_random.params, units, key=KEY, steps=4)
    assert r.images.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(np.asarray(r.trace[0]), np.asarray(r.trace[1]), rtol=1e-5)
    assert np.all(np.asarray(r.trace[:, -1]) > np.asarray(r.trace[:, 0]))


def test_linen_conv_channels_with_pad_and_rotate(resnet_random):
    r = mx.all_units(resnet_random, resnet_random.params, "block1_conv1", units=range(3),
                     key=KEY, steps=4, transforms=(mx.pad(2), mx.rotate()))  # it sees 32x32
    assert r.images.shape == (3, 28, 28, 1)
    assert np.all(np.asarray(r.trace[:, -1]) > np.asarray(r.trace[:, 0]))


def test_three_channels_fourier_plain_fn_and_input_range():
    w = jax.random.normal(jax.random.key(3), (8 * 8 * 3, 5))
    fn = lambda params, x: x.reshape(x.shape[0], -1) @ params
    r = mx.maximize(fn, w, [mx.class_logit(0), mx.class_logit(4)], key=KEY, steps=5,
                    shape=(8, 8, 3), input_range=(-1.0, 2.0), param="fourier",
                    regularizers=(mx.lp_norm(0.1), mx.blur(0.1), mx.decay(0.1)))
    assert r.images.shape == (2, 8, 8, 3)
    assert float(r.images.min()) >= -1.0 and float(r.images.max()) <= 2.0
    assert np.all(np.asarray(r.trace[:, -1]) > np.asarray(r.trace[:, 0]))


def test_transforms_and_regularizers_units():
    x = jax.random.uniform(jax.random.key(1), (10, 12, 3))
    k = jax.random.key(2)
    for identity in (mx.jitter(0), mx.rotate(0), mx.scale(1.0), mx.chain(mx.pad(0), mx.crop(10, 12))):
        np.testing.assert_allclose(jax.jit(identity)(k, x), x, atol=1e-5)
    for t in (mx.jitter(2), mx.scale(), mx.chain(mx.pad(3), mx.crop(10, 12))):
        assert jax.jit(t)(k, x).shape == x.shape
    assert jax.jit(mx.pad(2))(k, x).shape == (14, 16, 3)
    np.testing.assert_allclose(jax.jit(mx.rotate(90))(k, x[:, :10]), jnp.rot90(x[:, :10], -1),
                               atol=1e-5)
    flat = jnp.full((10, 12, 3), 0.3)
    assert float(mx.total_variation(1.0)(flat)) < 1e-6 < float(mx.total_variation(1.0)(x))
    np.testing.assert_allclose(mx.lp_norm(1.0, 6)(flat), 0.3, rtol=1e-5)
    assert float(mx.blur(1.0)(flat)) < 1e-9
    assert mx.total_variation(0.1) == mx.total_variation(0.1)  # equal settings: no retrace


def test_nan_mid_run_names_unit_and_step(cnn_random):
    start = float(cnn_random(cnn_random.params, jnp.full((1, 28, 28, 1), 0.5))[0, 0])

    def blows_up(acts):  # NaN once logit 0 has risen by 0.3
        z = acts["logits"][:, 0]
        return jnp.where(z > start + 0.3, jnp.nan, z)

    with pytest.raises(FloatingPointError, match=r"unit 1 \(.*\) at step \d+"):
        mx.maximize(cnn_random, cnn_random.params, [mx.class_logit(1), blows_up], key=KEY,
                    steps=12)


def test_dead_unit_warns_and_stays_finite(cnn_random):
    with pytest.warns(RuntimeWarning, match="dead unit"):
        r = mx.maximize(cnn_random, cnn_random.params, lambda a: 0.0 * a["logits"][:, 0],
                        key=KEY, steps=2)
    assert np.all(np.isfinite(np.asarray(r.images)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(objective=mx.class_logit(10)), r"class index 10 is out of range.*10 classes"),
    (dict(objective=mx.channel("conv1", 32)), r"channel 32 is out of range.*32 channels"),
    (dict(objective=mx.channel("conv9", 0)), r"unknown layer 'conv9'; known layers: \['conv1'"),
    (dict(objective=mx.neuron("conv1", 0, 26, 0)), r"neuron y 26 is out of range"),
    (dict(objective=mx.direction("conv1", np.ones(3))), r"direction .* shape \(32,\)"),
    (dict(steps=0), r"steps must be an integer >= 1"),
    (dict(input_range=(1.0, 0.0)), r"input_range .* lo < hi"),
    (dict(shape=(20, 20, 1)), r"shape: the model cannot take images shaped \(20, 20, 1\)"),
    (dict(shape=(28, 28)), r"shape must be one image \(H, W, C\)"),
    (dict(loop="while"), r"loop must be"),
    (dict(param="wavelet"), r"param must be 'pixel' or 'fourier'"),
    (dict(checkpoints=(300,)), r"checkpoints must be ints in \[0, steps=256\]"),
    (dict(objective=[]), r"empty list"),
])
def test_bad_input(cnn_random, kwargs, match):
    kwargs = {"objective": mx.class_logit(0), "key": KEY, **kwargs}
    with pytest.raises(ValueError, match=match):
        mx.maximize(cnn_random, cnn_random.params, kwargs.pop("objective"), **kwargs)


def test_layer_objective_needs_a_probe(cnn_random):
    with pytest.raises(ValueError, match="unknown layer 'conv1'; known layers: \\[\\]"):
        mx.maximize(cnn_random.__call__, cnn_random.params, mx.channel("conv1", 0), key=KEY,
                    shape=(28, 28, 1))
    # A plain function carries no input spec: the shape must be given.
    with pytest.raises(ValueError, match=r"shape: the model's input shape is unknown"):
        mx.maximize(cnn_random.__call__, cnn_random.params, mx.class_logit(0), key=KEY)
    with pytest.raises(ValueError, match="unknown layer 'conv7'; known layers: \\['logits'"):
        mx.all_units(cnn_random, cnn_random.params, "conv7", key=KEY)
    with pytest.raises(ValueError, match="class index must be an int"):
        mx.class_logit(1.5)


def test_figure_functions_return_figures(classes):
    import matplotlib.pyplot as plt
    from jaxviz.plot import maximize as pm
    r = classes
    figs = [pm.class_grid(r.best, np.linspace(0, 1, 10)),
            pm.unit_grid(r.best[:4], layer="conv1"),
            pm.progress_strip(r.snapshots[:, 0], (0, 4, STEPS)),
            pm.tv_comparison(r.best[:3], r.images[:3], tv_plain=[1, 2, 3], tv_smooth=[1, 1, 1],
                             value_plain=[1, 2, 3], value_smooth=[1, 2, 3], labels="abc",
                             weight=1.0),
            pm.trace_plot(r.trace, [str(i) for i in range(10)])]
    for f in figs:
        assert len(f.axes) >= 1
        plt.close(f)
    from jaxviz.report.maximize_stage import total_variation
    np.testing.assert_allclose(total_variation(r.best), tv(r.best), rtol=1e-5)


