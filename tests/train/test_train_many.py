"""Many models in one program (jaxviz.train.many): the vmapped run equals the same models
trained one after another, one step equals step.train_step by hand, each model trains on
its own view of the data, and evaluate_many counts what the models get right."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz.train import TrainConfig, make_optimizer, many, step


class Tiny(nnx.Module):
    """conv (stride 2) -> relu -> dense: x (N, 8, 8, 1) -> (N, 3)."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)).reshape(x.shape[0], -1))


CONFIG = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, shift=0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = (np.arange(24) % 3).astype(np.int32)
    x = (rng.random((24, 8, 8, 1)) * 0.3 + (y[:, None, None, None] == 1) * 0.5).astype(np.float32)
    return x, y


def scaled(data, variant, idx):
    """Model m sees its images times variants[m]."""
    return data[0][idx] * variant, data[1][idx]


@pytest.fixture(scope="module")
def runs(data):
    stack = many.stack_models([Tiny(nnx.Rngs(s)) for s in range(3)])
    scale = jnp.asarray([1.0, 0.5, 2.0])
    kw = dict(seeds=[0, 1, 2], variants=scale, view=scaled)
    return (stack, many.fit_many(stack, CONFIG, data, **kw),
            many.fit_sequential(stack, CONFIG, data, **kw))


def _max_diff(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(jnp.max(jnp.abs(p - q))) for p, q in pairs)


def test_vmapped_equals_one_after_another(runs):
    stack, together, alone = runs
    assert together.losses.shape == (3, 2 * 3)
    np.testing.assert_allclose(together.losses, alone.losses, rtol=1e-5, atol=1e-6)
    assert _max_diff(together.stack.params, alone.stack.params) < 1e-5
    assert _max_diff(together.stack.params, stack.params) > 1e-3  # it did train
    assert len({round(float(v), 5) for v in together.losses[:, 0]}) == 3  # three models


def test_models_two_at_a_time_in_the_program_give_the_same_models(data, runs):
    """models_at_once=2 of 3: a loop over a vmapped pair and a single one, one program."""
    stack, together, _ = runs
    grouped = many.fit_many(stack, CONFIG, data, seeds=[0, 1, 2], view=scaled,
                            variants=jnp.asarray([1.0, 0.5, 2.0]), models_at_once=2)
    np.testing.assert_allclose(grouped.losses, together.losses, rtol=1e-5, atol=1e-6)
    assert _max_diff(grouped.stack.params, together.stack.params) < 1e-5


def test_each_model_trains_on_its_own_view(data, runs):
    """Model 1 (images x 0.5) equals a one-model run on images pre-scaled by 0.5."""
    stack, together, _ = runs
    one = many.Stack(stack.graphdef, *jax.tree.map(lambda a: a[1:2], (stack.params, stack.rest)))
    direct = many.fit_many(one, CONFIG, (data[0] * 0.5, data[1]), seeds=[1],
                           variants=jnp.ones(1), view=scaled)  # fit_sequential's program
    np.testing.assert_allclose(direct.losses[0], together.losses[1], rtol=1e-5, atol=1e-6)


def test_one_full_batch_step_is_train_step(data):
    """One epoch of one full batch: the order does not matter, so the step is train_step's."""
    x, y = data
    config = TrainConfig(epochs=1, batch_size=len(y), learning_rate=1e-2, shift=0)
    model = Tiny(nnx.Rngs(5))
    trainable, params = step.split_model(model)
    optimizer = make_optimizer(config, 1)
    want, *_ = step.jitted_train_step(trainable.graphdef, optimizer, 0, params, trainable.rest,
                                      optimizer.init(params), jnp.asarray(x), jnp.asarray(y),
                                      jax.random.key(0))
    got = many.fit_many(many.stack_models([Tiny(nnx.Rngs(5))]), config, data, seeds=[7])
    assert _max_diff(jax.tree.map(lambda a: a[0], got.stack.params), want) < 1e-6


def test_evaluate_many_counts_correct_predictions(data, runs):
    _, together, _ = runs
    x, y = data
    loss, acc = many.evaluate_many(together.stack, data, variants=jnp.asarray([1.0, 0.5, 2.0]),
                                   view=scaled, chunk_size=10)  # 24 rows: a padded last chunk
    for m, scale in enumerate((1.0, 0.5, 2.0)):
        params, rest = jax.tree.map(lambda a: a[m], (together.stack.params, together.stack.rest))
        logits = np.asarray(step.infer(together.stack.graphdef, params, rest,
                                       jnp.asarray(x * scale)))
        assert round(float(acc[m]) * len(y)) == np.sum(logits.argmax(-1) == y)
        assert 0 < acc[m] < 1  # not a trivial case
        expect = -np.mean(jax.nn.log_softmax(logits)[np.arange(len(y)), y])
        np.testing.assert_allclose(loss[m], expect, rtol=1e-5)


def test_bad_arguments_are_named(data):
    stack = many.stack_models([Tiny(nnx.Rngs(0)), Tiny(nnx.Rngs(1))])
    with pytest.raises(ValueError, match="seeds must give one seed per model"):
        many.fit_many(stack, CONFIG, data, seeds=[0])
    with pytest.raises(ValueError, match="variants must have a leading axis"):
        many.fit_many(stack, CONFIG, data, seeds=[0, 1], variants=jnp.zeros(3))
    with pytest.raises(ValueError, match="models_at_once must be None or an int >= 1"):
        many.fit_many(stack, CONFIG, data, seeds=[0, 1], models_at_once=0)
    with pytest.raises(ValueError, match="batch_size"):
        many.fit_many(stack, TrainConfig(batch_size=64), data, seeds=[0, 1])

    class Wider(Tiny):
        def __init__(self, rngs):
            super().__init__(rngs)
            self.head = nnx.Linear(64, 5, rngs=rngs)

    with pytest.raises(ValueError, match="another architecture"):
        many.stack_models([Tiny(nnx.Rngs(0)), Wider(nnx.Rngs(0))])
