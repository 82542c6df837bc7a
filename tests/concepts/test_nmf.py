"""NMF in JAX and concept discovery on a model whose layer is known."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import concepts
from jaxviz.concepts import factorize as nmf_lib
from jaxviz.core import probe as probe_lib


@pytest.fixture(scope="module")
def low_rank():
    rng = np.random.default_rng(0)
    w, h = rng.uniform(0, 1, (80, 4)), rng.uniform(0, 1, (4, 20))
    return (w @ h).astype(np.float32)


def test_nmf_reconstructs_low_rank_matrix_with_nonnegative_factors(low_rank):
    fit = concepts.nmf(low_rank, 4, key=jax.random.key(0), steps=300)
    w, h = np.asarray(fit.w), np.asarray(fit.h)
    assert w.min() >= 0 and h.min() >= 0
    err = nmf_lib.relative_error(low_rank, w, h)
    assert err < 0.02, err  # stated in docs/concepts.md: rank-4 data, 300 steps, < 2 %
    np.testing.assert_allclose(float(fit.error), err, rtol=1e-3)


def test_nmf_refuses_negative_input():
    with pytest.raises(ValueError, match="a must be non-negative; its smallest entry is -1"):
        concepts.nmf(-np.ones((4, 3)), 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"k must lie in \[1, 3\]"):
        concepts.nmf(np.ones((4, 3)), 5, key=jax.random.key(0))


class TwoParts(nnx.Module):
    """conv1 (1x1): channels = (red, green, blue, |r - g|) of the pixel, minus 0.2;
    logits = dense(mean of relu(conv1))."""

    def __init__(self):
        self.conv1 = nnx.Conv(3, 3, (1, 1), rngs=nnx.Rngs(0))
        self.conv1.kernel[...] = jnp.eye(3)[None, None]
        self.conv1.bias[...] = jnp.full(3, -0.2)
        self.head = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        self.head.kernel[...] = jnp.array([[2.0, -1.0], [-1.0, 1.0], [0.5, 0.0]])
        self.head.bias[...] = jnp.zeros(2)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv1(x)).mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def discovered():
    rng = np.random.default_rng(0)
    x = np.zeros((12, 8, 8, 3), np.float32)
    for i in range(12):  # a red and a green square per image, at random places
        for c in (0, 1):
            y0, x0 = rng.integers(0, 5, 2)
            x[i, y0:y0 + 3, x0:x0 + 3, c] = 1.0
    probe = probe_lib.from_model(TwoParts(), input_shape=(8, 8, 3), input_range=(0.0, 1.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = concepts.discover(probe, probe.params, x, layer="conv1", n_concepts=2,
                              key=jax.random.key(0), steps=300)
    return probe, x, d, caught


def test_discovery_finds_the_two_parts_and_warns_about_clipping(discovered):
    _, x, d, caught = discovered
    assert any("negative" in str(w.message) for w in caught)  # conv1 is read before its ReLU
    a = np.maximum(x - 0.2, 0).reshape(-1, 3)  # relu(conv1) by hand
    np.testing.assert_allclose(d.error, nmf_lib.relative_error(
        a, d.heat.reshape(-1, 2), d.directions), rtol=1e-3)
    assert d.error < 0.01
    unit = d.directions / np.linalg.norm(d.directions, axis=1, keepdims=True)
    # one concept is the red channel, the other the green one (in some order)
    assert sorted(np.argmax(unit, axis=1).tolist()) == [0, 1]
    assert unit.max(axis=1).min() > 0.99


def test_concept_importance_by_hand(discovered):
    probe, x, d, _ = discovered
    imp = concepts.concept_importance(probe, probe.params, x, d, 0)
    a = x - 0.2  # conv1's output
    w0 = np.array([2.0, -1.0, 0.5])
    g = ((a > 0) * w0 / 64).sum(axis=(1, 2))  # d logit_0 / d a, summed over positions
    unit = d.directions / np.linalg.norm(d.directions, axis=1, keepdims=True)
    np.testing.assert_allclose(imp["per_image"], g @ unit.T, rtol=1e-4, atol=1e-7)
    red = int(np.argmax(unit[:, 0]))
    assert imp["importance"][red] > 0 > imp["importance"][1 - red]


def test_top_patches_come_from_the_strongest_positions(discovered):
    _, x, d, _ = discovered
    patches, which = concepts.top_patches(x, d, n=3, patch=3)
    for j in range(2):
        peak = d.heat[..., j].reshape(12, -1).max(1)
        np.testing.assert_array_equal(which[j], np.argsort(-peak)[:3])
        i = which[j, 0]
        yy, xx = divmod(int(d.heat[i, ..., j].argmax()), 8)
        y0, x0 = np.clip(yy - 1, 0, 5), np.clip(xx - 1, 0, 5)
        np.testing.assert_array_equal(patches[j, 0], x[i, y0:y0 + 3, x0:x0 + 3])
