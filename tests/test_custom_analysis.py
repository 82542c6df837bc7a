import jax
import jax.numpy as jnp
import numpy as np

from experiments.custom_analysis import contrastive_saliency


def test_contrastive_saliency_matches_direct_gradients(cnn_random, digits):
    x = jnp.asarray(digits[0][:2])
    maps = contrastive_saliency(cnn_random, cnn_random.params, x)
    assert maps.shape == (2, 10, 10, 28, 28, 1)
    direct = jax.grad(lambda z: (cnn_random(cnn_random.params, z)[1, 3]
                                 - cnn_random(cnn_random.params, z)[1, 7]))(x)[1]
    np.testing.assert_allclose(maps[1, 3, 7], direct, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps[:, 4, 4], 0.0)
    np.testing.assert_allclose(maps[:, 2, 5], -maps[:, 5, 2], atol=1e-7)
