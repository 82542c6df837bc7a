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
    with pytest.raises(TypeError, match="nnx.Module, a Flax linen.Module .*equinox.Module.*keras.Model"):
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


# ---- input spec, structural equality, static views -------------------------------------

def _fresh_cnn(seed, **kwargs):
    return probe.from_model(MnistCNN(rngs=nnx.Rngs(seed)), **kwargs)


def test_probes_compare_by_structure_not_weights(cnn_random, resnet_random):
    # cnn_random is _fresh_cnn(0); one seed-1 model serves both b and the other input spec
    # (building a 1.2M-parameter MnistCNN is most of this test's time).
    seed1 = MnistCNN(rngs=nnx.Rngs(1))
    a, b = cnn_random, probe.from_model(seed1)
    assert not np.array_equal(jax.tree.leaves(a.params)[-1], jax.tree.leaves(b.params)[-1])
    assert a == b and hash(a) == hash(b)
    assert a != probe.from_model(MnistCNN(num_classes=5, rngs=nnx.Rngs(0)))  # architecture
    assert a != resnet_random                                                # NNX vs Linen
    assert a != probe.from_model(seed1, input_range=(-1.0, 1.0))             # input spec
    x = np.zeros((1, 28, 28, 1), np.float32)
    other = ResidualCNN(width=8)
    same = probe.from_model(other, other.init(jax.random.key(5), x), input_shape=(28, 28, 1))
    assert same == resnet_random and hash(same) == hash(resnet_random)
    wide = ResidualCNN(width=16)
    assert probe.from_model(wide, wide.init(jax.random.key(0), x),
                            input_shape=(28, 28, 1)) != resnet_random


def test_static_view_is_equal_and_holds_no_arrays(cnn_random, digits):
    a = cnn_random
    v = probe.static_view(a)
    assert v == a and hash(v) == hash(a) and probe.static_view(v) is v
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(v.params))
    assert not any(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(v.params))
    x = jnp.asarray(digits[0][:2])
    assert v.layer_shapes(x.shape) == a.layer_shapes(x.shape)
    assert (v.input_shape, v.input_range, v.num_classes) == ((28, 28, 1), (0.0, 1.0), 10)
    np.testing.assert_array_equal(v(a.params, x), a(a.params, x))  # weights come as arguments
    fn = lambda params, x: x  # noqa: E731
    assert probe.static_view(fn) is fn


def test_input_spec_from_model_or_arguments(cnn_random):
    cnn = cnn_random  # MnistCNN declares its input_shape
    assert (cnn.input_shape, cnn.input_range, cnn.num_classes) == ((28, 28, 1), (0.0, 1.0), 10)
    module = ResidualCNN(width=8)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    unknown = probe.from_model(module, variables)
    assert unknown.input_shape is None and unknown.num_classes is None
    rgb = probe.from_model(module, variables, input_shape=(32, 32, 3), input_range=(-1, 1))
    assert (rgb.input_shape, rgb.input_range, rgb.num_classes) == ((32, 32, 3), (-1.0, 1.0), 10)
    with pytest.raises(ValueError, match=r"input_shape must be one image's \(H, W, C\).*\(28, 28\)"):
        probe.from_model(module, variables, input_shape=(28, 28))
    with pytest.raises(ValueError, match=r"input_range must be finite with lo < hi"):
        probe.from_model(module, variables, input_range=(1.0, 0.0))


class _Plain(nnx.Module):
    """An NNX model that does not declare its input shape."""

    def __init__(self, rngs):
        self.lin = nnx.Linear(8 * 8 * 3, 4, rngs=rngs)

    def __call__(self, x):
        return self.lin(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("made,shape,input_range,classes", [
    (lambda s: _Plain(nnx.Rngs(s)), None, None, None),
    (lambda s: (_Plain(nnx.Rngs(s)), (8, 8, 3)), (8, 8, 3), (0.0, 1.0), 4),
    (lambda s: (_Plain(nnx.Rngs(s)), (8, 8, 3), (-1.0, 1.0)), (8, 8, 3), (-1.0, 1.0), 4),
    (lambda s: (ResidualCNN(width=4), (12, 12, 2)), (12, 12, 2), (0.0, 1.0), 10),
    (lambda s: MnistCNN(rngs=nnx.Rngs(s)), (28, 28, 1), (0.0, 1.0), 10),
])
def test_factories_give_the_probe_its_spec(made, shape, input_range, classes, monkeypatch):
    """Today's forms (a bare NNX model, (linen, shape)) and the spec forms."""
    from jaxviz import registry
    monkeypatch.setitem(registry.BUILTIN, "toy", made)
    if shape is None:
        with pytest.raises(ValueError, match="model factory 'toy' must return .* without input_shape"):
            registry.build("toy")
        return
    built = registry.build("toy", seed=1)
    p = registry.to_probe(built)
    assert (built.input_shape, p.input_shape, p.input_range) == (shape, shape, input_range)
    assert p.num_classes == classes


def test_fresh_probe_of_the_same_model_compiles_nothing(cnn_random, compiles):
    """New weights, same structure: the analyses reuse their compiled code. A different
    architecture compiles (the counting can fail)."""
    from jaxviz import maximize as mx
    from jaxviz import occlusion

    x = jnp.full((1, 28, 28, 1), 0.5)

    def analyses(p):
        mx.maximize(p, p.params, mx.class_logit(3), key=jax.random.key(0), steps=2)
        occlusion.occlusion(p, p.params, x, 3, window=14, stride=14)

    analyses(cnn_random)  # MnistCNN, seed 0
    assert compiles(lambda: analyses(_fresh_cnn(1)), "") == []
    assert compiles(lambda: analyses(probe.from_model(MnistCNN(num_classes=5,
                                                                rngs=nnx.Rngs(0)))), "") != []


_NO_PINNED_WEIGHTS = """
import gc, json, weakref
import jax, jax.numpy as jnp
from flax import nnx
from jaxviz import maximize as mx, occlusion
from jaxviz.maximize import loop
from jaxviz.core import probe
from jaxviz.models import MnistCNN

def fresh(seed):
    return probe.from_model(MnistCNN(rngs=nnx.Rngs(seed)))

x = jnp.full((1, 28, 28, 1), 0.5)
p = fresh(0)
viewed = weakref.ref(jax.tree.leaves(p.params)[-1])
mx.maximize(p, p.params, mx.class_logit(3), key=jax.random.key(0), steps=2, loop="scan")
occlusion.occlusion(p, p.params, x, 3, window=14, stride=14)
q = fresh(1)
pinned = weakref.ref(jax.tree.leaves(q.params)[-1])
jax.jit(lambda fn, x: fn(fn.params, x), static_argnums=0)(q, x)  # the Probe itself as static
del p, q
gc.collect()
traces, cached = dict(loop.TRACES), loop.scan._cache_size()
r = fresh(2)
mx.maximize(r, r.params, mx.class_logit(3), key=jax.random.key(0), steps=2, loop="scan")
print(json.dumps({"viewed_alive": viewed() is not None, "pinned_alive": pinned() is not None,
                  "retraced": loop.TRACES != traces, "cached": cached}))
"""


def test_compiled_caches_do_not_pin_weights():
    """In a fresh process: after `del probe`, its weights are freed although the compiled
    ascent stays cached (and is reused by the next probe); a Probe passed as a static
    argument itself, not as its static view, keeps its weights alive."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NO_PINNED_WEIGHTS], capture_output=True,
                         text=True, check=True, timeout=600)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"viewed_alive": False, "pinned_alive": True, "retraced": False,
                   "cached": 1}
