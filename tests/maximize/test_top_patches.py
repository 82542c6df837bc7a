"""Top-activating patches: the measured receptive field of two 3x3 convolutions, and the
patches against a brute-force search over images and positions; the atlas figure's layout."""
import jax
import numpy as np
import pytest

from jaxviz.maximize import patches
from tests.helpers.maximize_tiny import tiny_rgb


def test_receptive_field_and_top_patches_by_brute_force():
    probe = tiny_rgb()
    size, origin, stride = patches.receptive_field(probe, probe.params, "conv2", (8, 8, 3),
                                                   key=jax.random.key(0))
    assert (size, origin, stride) == ((5, 5), (0, 0), (1, 1))  # two 3x3 VALID convs
    x = np.asarray(jax.random.uniform(jax.random.key(1), (12, 8, 8, 3)))
    top = patches.top_patches(probe, probe.params, x, "conv2", k=3, channels=[1, 4],
                              batch_size=5)
    a = np.asarray(probe.run(probe.params, x)[1]["conv2"])  # (12, 4, 4, 6)
    for row, c in enumerate((1, 4)):
        best = a[..., c].reshape(12, -1).max(1)
        order = np.argsort(-best, kind="stable")[:3]
        np.testing.assert_array_equal(top.index[row], order)
        np.testing.assert_allclose(top.value[row], best[order], rtol=1e-6)
        for j, i in enumerate(order):
            y, xx = np.unravel_index(a[i, ..., c].argmax(), (4, 4))
            np.testing.assert_array_equal(top.patches[row, j], x[i, y:y + 5, xx:xx + 5])


def test_channel_atlas_lays_out_one_row_per_channel_pair():
    import matplotlib.pyplot as plt

    from jaxviz.plot import maximize as plot

    vis, pat = np.zeros((3, 8, 8, 3)), np.ones((3, 2, 5, 5, 3))
    fig = plot.channel_atlas(vis, pat, layer="conv2", channels=[4, 5, 9])
    assert len(fig.axes) == 3 * (1 + 2)
    assert [ax.get_title() for ax in fig.axes[::3]] == ["conv2:4", "conv2:5", "conv2:9"]
    plt.close(fig)
    with pytest.raises(ValueError, match="one entry per channel"):
        plot.channel_atlas(vis, pat[:2], layer="conv2")
