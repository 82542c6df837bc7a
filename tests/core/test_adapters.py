"""The adapter protocol: dispatch, the refusal listing what is accepted, a new library as
one registered adapter, and `from_function` in its three forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import arch
from jaxviz.core import adapters
from jaxviz.core import probe as probe_lib

N, SHAPE = 2, (6, 6, 1)
KEY = jax.random.key(0)
PARAMS = {"params": {"conv": {"kernel": jax.random.normal(KEY, (3, 3, 1, 2)),
                              "bias": jnp.array([0.1, -0.2])},
                     "head": {"kernel": jax.random.normal(jax.random.fold_in(KEY, 1), (2, 3))}}}
X = jax.random.uniform(jax.random.key(3), (N, *SHAPE))


def _conv(p, x):
    return jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]


def _head(p, a):
    return jax.nn.relu(a).mean((1, 2)) @ p["head"]["kernel"]


def tapped(params, x, tap):
    p = params["params"]
    with jax.named_scope(probe_lib.layer_scope("conv")):
        a = tap("conv", _conv(p["conv"], x))
    return tap("head", _head(p, a))


def test_refusal_lists_every_accepted_kind():
    with pytest.raises(TypeError) as err:
        probe_lib.from_model(object())
    text = str(err.value)
    for words in ("nnx.Module", "linen.Module", "equinox.Module", "keras.Model",
                  "from_function", "got builtins.object"):
        assert words in text


def test_function_with_tap_reads_and_edits_layers():
    probe = probe_lib.from_function(tapped, PARAMS, input_shape=SHAPE)
    a = _conv(PARAMS["params"]["conv"], X)
    out, acts = jax.jit(lambda p, x: probe.run(p, x))(PARAMS, X)
    np.testing.assert_allclose(out, _head(PARAMS["params"], a), rtol=1e-6)
    np.testing.assert_allclose(acts["conv"], a, rtol=1e-6)
    assert list(probe.layer_shapes(X.shape)) == ["conv", "head"] and probe.num_classes == 3
    edited, _ = probe.run(PARAMS, X, edits={"conv": lambda v: v * 2.0})
    np.testing.assert_allclose(edited, _head(PARAMS["params"], a * 2.0), rtol=1e-5)
    assert probe == probe_lib.from_function(tapped, jax.tree.map(jnp.zeros_like, PARAMS),
                                            input_shape=SHAPE)  # structure, not weights
    rows = arch.summary(probe, X).rows
    assert [r.name for r in rows] == ["conv", "head"] and rows[0].params == 20


def test_function_returning_its_intermediates():
    def fn(params, x):
        a = _conv(params["params"]["conv"], x)
        return _head(params["params"], a), {"conv": a}
    probe = probe_lib.from_function(fn, PARAMS)
    out, acts = probe.run(PARAMS, X)
    np.testing.assert_allclose(acts["conv"], _conv(PARAMS["params"]["conv"], X), rtol=1e-6)
    np.testing.assert_allclose(out, tapped(PARAMS, X, lambda n, v: v), rtol=1e-6)
    with pytest.raises(ValueError, match=r"edits at \['conv'\].*takes no `tap`"):
        probe.run(PARAMS, X, edits={"conv": lambda v: v})
    plain = probe_lib.from_function(lambda p, x: fn(p, x)[0], PARAMS)
    assert plain.run(PARAMS, X)[1] == {}


class Toy:
    """A model of a 'library' jaxviz does not know: y = x.mean((1, 2)) @ w."""

    def __init__(self, w):
        self.w = w


def test_a_new_library_is_one_registered_adapter():
    def build(model, variables, options):
        return probe_lib.from_function(lambda p, x, tap: tap("dense", x.mean((1, 2)) @ p["w"]),
                                       {"w": model.w}, name="toy")
    toy = adapters.register(adapters.Adapter(
        name="toy", accepts="a Toy", claims=lambda m: isinstance(m, Toy), build=build,
        param_tree=lambda params: {"dense": {"kernel": params["w"]}}))
    try:
        w = jnp.arange(3.0)[:, None] * jnp.ones((1, 2))
        probe = probe_lib.from_model(Toy(w))
        x = jnp.ones((1, 4, 4, 3))
        np.testing.assert_allclose(probe(probe.params, x), x.mean((1, 2)) @ w)
        assert "a Toy" in adapters.accepted()
        assert adapters.for_model(Toy(w)) is toy
    finally:
        adapters.unregister("toy")
    assert "a Toy" not in adapters.accepted()


def test_layer_views_report_their_arrays():
    view = adapters.layer_view(Toy(None), {"bias": jnp.ones(2)}, 1e-3)
    assert type(view).__name__ == "Toy" and view.epsilon == 1e-3
    np.testing.assert_array_equal(adapters.own_arrays(view)["bias"], jnp.ones(2))
    assert adapters.own_arrays(object()) == {}
