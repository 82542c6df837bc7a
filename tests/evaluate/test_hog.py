"""HOG features against a hand-computed step edge and skimage.feature.hog; HOG similarity
of a map with itself and with an unrelated map."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.evaluate import hog as H


def _step(vertical: bool) -> np.ndarray:
    v = np.zeros((8, 8), np.float32)
    v[:, 4:] = 1.0
    return v if vertical else v.T


def test_a_step_edge_by_hand():
    # A vertical edge between columns 3 and 4: gradient 1 (central difference) on those two
    # columns, orientation 0 -> bin 0; each 4x4 cell has 4 such pixels, 4 / 16 = 0.25; the
    # one 2x2-cell block [.25]*4 -> L2 0.5 each -> clipped to 0.2 -> renormalised 0.5 each.
    want = np.zeros((2, 2, 9))
    want[..., 0] = 0.5
    got = np.asarray(H.hog(jnp.asarray(_step(True)[None])))
    np.testing.assert_allclose(got, want.reshape(1, -1), atol=1e-5)
    # The same edge turned: orientation 90 degrees -> bin 4 ([80, 100)).
    want_t = np.zeros((2, 2, 9))
    want_t[..., 4] = 0.5
    got_t = np.asarray(H.hog(jnp.asarray(_step(False)[None])))
    np.testing.assert_allclose(got_t, want_t.reshape(1, -1), atol=1e-5)
    sim = np.asarray(H.hog_similarity(jnp.asarray(np.stack([_step(True)] * 2)),
                                      jnp.asarray(np.stack([_step(True), _step(False)]))))
    np.testing.assert_allclose(sim[0], 1.0, atol=1e-6)
    assert sim[1] < 0  # the turned edge shares no bin: anticorrelated features
    with pytest.raises(ValueError, match="block"):
        H.hog(jnp.zeros((1, 4, 4)))


def test_equals_skimage_hog():
    feature = pytest.importorskip("skimage.feature")  # the peer; the hand case runs anywhere
    x = np.random.default_rng(0).normal(size=(3, 12, 16)).astype(np.float32)
    ref = np.stack([feature.hog(v.astype(np.float64), orientations=9, pixels_per_cell=(4, 4),
                                cells_per_block=(2, 2), block_norm="L2-Hys") for v in x])
    np.testing.assert_allclose(np.asarray(H.hog(jnp.asarray(x))), ref, atol=1e-5)
