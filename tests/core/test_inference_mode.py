"""A Probe runs the model in inference mode without being told how: mode flags get their
inference value, an explicit apply_kwargs wins, and a model that would still change its
variables is refused with an error naming the variable."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxviz.core import modes, probe

from tests.helpers.state_models import BNResNet  # noqa: I001 (tests/ is on sys.path)

X = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))


def _head(x, on):
    """Logits that reveal a flag's value: twice as large when it is on."""
    return nn.Dense(3)(x.mean(axis=(1, 2))) * (1.0 + on)


class Train(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        return _head(x, train)


class Training(nn.Module):
    @nn.compact
    def __call__(self, x, *, training=True):
        return _head(x, training)


class Deterministic(nn.Module):
    @nn.compact
    def __call__(self, x, deterministic=False):
        return _head(x, deterministic)


class UseRunningAverage(nn.Module):
    @nn.compact
    def __call__(self, x, use_running_average=False):
        return _head(x, use_running_average)


FLAGGED = {"train": Train, "training": Training, "deterministic": Deterministic,
           "use_running_average": UseRunningAverage}


@pytest.mark.parametrize("flag", sorted(modes.FLAGS))
def test_each_linen_mode_flag_gets_its_inference_value(flag):
    assert set(FLAGGED) == set(modes.FLAGS)
    module = FLAGGED[flag]()
    variables = module.init(jax.random.key(0), X)
    inference = not modes.FLAGS[flag]
    p = probe.from_model(module, variables)
    np.testing.assert_array_equal(p(p.params, X), module.apply(variables, X, **{flag: inference}))
    assert not np.allclose(p(p.params, X), module.apply(variables, X, **{flag: not inference}))
    explicit = probe.from_model(module, variables, apply_kwargs={flag: not inference})
    np.testing.assert_array_equal(explicit(explicit.params, X),
                                  module.apply(variables, X, **{flag: not inference}))


@pytest.fixture(scope="module")
def trained_resnet():
    """BNResNet with running statistics away from 0 / 1 (one training-mode update)."""
    module = BNResNet()
    # Jitted: one compiled program each instead of an eager compile per op (the set-up, not
    # the behaviour under test).
    variables = jax.jit(lambda k, x: module.init(k, x, train=False))(jax.random.key(0), X)
    _, updates = jax.jit(lambda v, x, r: module.apply(v, x, train=True, mutable=["batch_stats"],
                                                      rngs={"dropout": r}))(
        variables, X * 3 + 1, jax.random.key(2))
    return module, {**variables, **updates}


def test_linen_resnet_runs_in_inference_mode_without_apply_kwargs(trained_resnet):
    module, variables = trained_resnet
    p = probe.from_model(module, variables)
    expected = module.apply(variables, X, train=False)
    np.testing.assert_array_equal(p(p.params, X), expected)
    # Batch-independent: one image alone gives its row of the batch's logits.
    np.testing.assert_allclose(p(p.params, X[2:3])[0], expected[2], rtol=1e-5, atol=1e-6)
    _, acts = p.run(p.params, X)
    assert {"block1", "block2", "head"} <= set(acts)


def test_linen_model_that_updates_statistics_in_inference_is_refused(trained_resnet):
    module, variables = trained_resnet
    forced = probe.from_model(module, variables, apply_kwargs={"train": True})
    with pytest.raises(ValueError, match=r'changes its variable "mean" in "/stem_bn" '
                                         r'\(collection "batch_stats"\) when called in '
                                         r"inference mode \(with \{'train': True\}\)"):
        forced(forced.params, X)

    class FixedBN(nn.Module):  # no flag at all: always updates its statistics
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(x).mean(axis=(1, 2))

    fixed = FixedBN()
    v = fixed.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match=r'variable "mean" in "/BatchNorm_0"'):
        probe.from_model(fixed, v).layer_shapes(X.shape)
    with pytest.raises(ValueError, match="apply_kwargs: .* drop 'mutable'"):
        probe.from_model(fixed, v, apply_kwargs={"mutable": ["batch_stats"]})


class _NNXFlagged(nnx.Module):
    """An NNX model that reads a `train` argument instead of its attributes."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x, train: bool = True):
        h = self.bn(self.conv(x), use_running_average=not train)
        return self.head(nnx.relu(h).mean(axis=(1, 2)))


def test_nnx_train_argument_gets_false_and_forcing_true_is_refused():
    model = _NNXFlagged(nnx.Rngs(0))
    model.bn.mean[...] = jnp.full((4,), 0.3)  # so running and batch statistics differ
    before = np.asarray(model.bn.mean[...])
    p = probe.from_model(model)
    np.testing.assert_array_equal(p(p.params, X), nnx.clone(model)(X, train=False))
    assert not np.allclose(p(p.params, X), nnx.clone(model)(X, train=True))
    forced = probe.from_model(model, apply_kwargs={"train": True})
    with pytest.raises(ValueError, match=r"changes its variable \['bn'\]\['mean'\] when called "
                                         r"in inference mode"):
        forced(forced.params, X)
    np.testing.assert_array_equal(model.bn.mean[...], before)  # the user's model is untouched


def test_nnx_model_with_its_own_dropout_rngs_is_deterministic():
    class OwnDropout(nnx.Module):
        def __init__(self, rngs):
            self.drop = nnx.Dropout(0.5, rngs=rngs)
            self.head = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(self.drop(x.mean(axis=(1, 2))))

    model = OwnDropout(nnx.Rngs(0))
    p = probe.from_model(model)
    a, b = p(p.params, X), p(p.params, X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, model.head(X.mean(axis=(1, 2))), rtol=1e-6)


def test_linen_model_wrapped_as_nnx_gets_its_flag_too(trained_resnet):
    """The registry's ToNNX bridge passed to from_model as an NNX module: the wrapped Linen
    module's `train` flag is the one filled in."""
    from jaxviz import registry

    module, variables = trained_resnet
    wrapped = registry.build("tests.helpers.state_models:bn_resnet").model  # the same BNResNet()
    for collection, kind in (("params", nnx.Param), ("batch_stats", nnx.BatchStat)):
        state = nnx.state(wrapped, kind)
        nnx.replace_by_pure_dict(state, variables[collection])
        nnx.update(wrapped, state)
    p = probe.from_model(wrapped)
    np.testing.assert_array_equal(p(p.params, X), module.apply(variables, X, train=False))
    forced = probe.from_model(wrapped, apply_kwargs={"train": True})
    with pytest.raises(ValueError, match=r'variable "mean" in "/stem_bn"'):
        forced(forced.params, X)
