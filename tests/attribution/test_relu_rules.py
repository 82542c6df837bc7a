"""Guided backprop / deconvnet rewrite activation ReLUs only, not a normalisation's variance
clamp max(0, var) (issue 14 item 5; the rule is in relu_rules' docstring). Each case is
checked both ways: by `census` and against a hand-written model with the guided ReLU put
where it belongs (and nowhere else)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz.propagation import relu_rules

# One compiled program for the module's data, not one eager program per array at collection.
X, W1, W2 = jax.jit(lambda: tuple(jax.random.normal(jax.random.key(k), s)
                                  for k, s in enumerate([(8, 6), (6, 6), (6, 3)])))()
LN = nnx.LayerNorm(6, rngs=nnx.Rngs(0))


@jax.custom_vjp
def _guided(x):
    return jnp.maximum(x, 0.0)


_guided.defvjp(lambda x: (jnp.maximum(x, 0.0), x),
               lambda x, g: (jnp.where((x > 0) & (g > 0), g, 0.0),))


def _norm(h, clamp):
    """A LayerNorm written out, its variance clamped by `clamp`, through a square root."""
    mu = h.mean(-1, keepdims=True)
    var = clamp((h * h).mean(-1, keepdims=True) - mu * mu)
    return (h - mu) / jnp.sqrt(var + 1e-5)


# name -> (model(relu) with every activation ReLU written as relu(.), ReLUs it has, clamps)
MODELS = {
    "relu_then_flax_layernorm": (lambda relu, x: LN(relu(x @ W1)) @ W2, 1, 1),
    "maximum_activation": (lambda relu, x: relu(x @ W1) @ W2, 1, 0),
    "relu_in_checkpoint": (lambda relu, x: jax.checkpoint(lambda h: relu(h @ W1))(x) @ W2, 1, 0),
    "sqrt_clamped_by_jax_nn_relu": (
        lambda relu, x: _norm(relu(x @ W1), jax.nn.relu) @ W2, 1, 1),
    "flax_layernorm_only": (lambda relu, x: LN(x @ W1) @ W2, 0, 1),
}


def _score(f):
    return lambda x: (f(x) * jnp.arange(1.0, 4.0)).sum()


@pytest.mark.parametrize("name", list(MODELS))
def test_only_activation_relus_get_the_guided_rule(name):
    model, n_relu, n_clamps = MODELS[name]
    plain = lambda x: model(lambda h: jnp.maximum(h, 0.0), x)  # noqa: E731
    found = relu_rules.census(plain, X)
    assert (found["relu"], found["clamps"]) == (n_relu, n_clamps), found
    want = jax.grad(_score(lambda x: model(_guided, x)))(X)  # the clamps keep their rule
    got = jax.grad(_score(relu_rules.with_relu_rule(plain, "guided")))(X)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if n_relu:  # the case tests something: the guided rule changes this model's gradient
        assert not np.allclose(want, jax.grad(_score(plain))(X), atol=1e-6)


def test_a_clamp_rewritten_as_a_relu_would_change_the_gradient():
    """The other way round: were LayerNorm's clamp given the guided rule, the gradient of a
    ReLU-free model would change (so the test above can tell the two apart)."""
    def ln_guided(x):
        h = x @ W1
        mu = h.mean(-1, keepdims=True)
        var = _guided((h * h).mean(-1, keepdims=True) - mu * mu)
        return ((h - mu) * jax.lax.rsqrt(var + LN.epsilon) * LN.scale[...]) @ W2
    plain = jax.grad(_score(lambda x: LN(x @ W1) @ W2))(X)
    np.testing.assert_allclose(ln_guided(X), LN(X @ W1) @ W2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(jax.grad(_score(ln_guided))(X), plain, atol=1e-6)
    got = jax.grad(_score(relu_rules.with_relu_rule(lambda x: LN(x @ W1) @ W2, "guided")))(X)
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-6)
