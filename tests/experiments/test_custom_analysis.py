import jax
import jax.numpy as jnp
import numpy as np

from experiments.examples.custom_analysis import contrastive_saliency, register, versus_runner_up
from jaxviz import attribution as A


def test_contrastive_saliency_matches_direct_gradients(cnn_random, digits):
    x = jnp.asarray(digits[0][:2])
    maps = contrastive_saliency(cnn_random, cnn_random.params, x)
    assert maps.shape == (2, 10, 10, 28, 28, 1)
    direct = jax.grad(lambda z: (cnn_random(cnn_random.params, z)[1, 3]
                                 - cnn_random(cnn_random.params, z)[1, 7]))(x)[1]
    np.testing.assert_allclose(maps[1, 3, 7], direct, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps[:, 4, 4], 0.0)
    np.testing.assert_allclose(maps[:, 2, 5], -maps[:, 5, 2], atol=1e-7)


def test_registered_example_method(cnn_random, digits):
    """The example's registered method is reachable by name and equals the contrastive map
    against the runner-up class, computed independently from the pairwise maps."""
    x, t = jnp.asarray(digits[0][:2]), np.asarray(digits[1][:2])
    register()
    try:
        res = A.attribute("versus_runner_up", cnn_random, cnn_random.params, x, t)
    finally:
        A.unregister("versus_runner_up")
    logits = np.asarray(cnn_random(cnn_random.params, x))
    pairs = contrastive_saliency(cnn_random, cnn_random.params, x)
    for i in range(2):
        rival = int(np.argsort(logits[i])[-2] if logits[i].argmax() == t[i] else logits[i].argmax())
        np.testing.assert_allclose(res.map[i], pairs[i, t[i], rival], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.map, versus_runner_up(cnn_random, cnn_random.params, x, t))
