"""Guarantee 22's library half: occlusion over many images in fixed-size groups
(`jaxviz.occlusion.grouped_occlusion`, used by `experiments/long_runs.py`)."""
import numpy as np
import pytest

from jaxviz import occlusion
from jaxviz.occlusion import grouped_occlusion


# 40 digits in groups of 16: two full groups and a padded one (8 real images), which is all
# the grouping distinguishes; more digits or positions would only add forward passes.
N, GROUP, KW = 40, 16, dict(window=4, stride=3)


def test_grouped_occlusion_equals_one_call(cnn_random, mnist):
    """40 digits in padded groups of 16 (one compiled shape) == all 40 in one call."""
    x, y = mnist.x_val[:N], mnist.y_val[:N]
    grouped = grouped_occlusion(cnn_random, cnn_random.params, x, y, group=GROUP, **KW)
    whole = occlusion.occlusion(cnn_random, cnn_random.params, x, y, **KW)
    assert grouped.map.shape == (N, 28, 28)
    np.testing.assert_allclose(grouped.map, np.asarray(whole.map),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grouped.extras["scores"], np.asarray(whole.extras["scores"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grouped.extras["base"], np.asarray(whole.extras["base"]), rtol=1e-5, atol=1e-5)


def test_grouped_occlusion_groups_a_per_image_baseline(cnn_random, mnist):
    """Each image keeps its own baseline: group 16 of 40 == one call with the same baselines."""
    x, y = mnist.x_val[:N], mnist.y_val[:N]
    baseline = np.random.default_rng(0).uniform(0, 1, x.shape).astype(np.float32)
    grouped = grouped_occlusion(cnn_random, cnn_random.params, x, y, group=GROUP,
                                baseline=baseline, **KW)
    whole = occlusion.occlusion(cnn_random, cnn_random.params, x, y, baseline=baseline, **KW)
    np.testing.assert_allclose(grouped.map, np.asarray(whole.map),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"group": 0}, "group must be an integer >= 1"),
    ({"images": np.zeros((28, 28, 1), np.float32)}, r"images must be a batch shaped"),
    ({"images": np.zeros((0, 28, 28, 1), np.float32)}, "empty batch"),
    ({"target": [1, 2]}, r"target must be an int or have one entry per image"),
])
def test_grouped_occlusion_names_bad_arguments(cnn_random, kwargs, match):
    args = {"images": np.zeros((3, 28, 28, 1), np.float32), "target": 0, "group": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        grouped_occlusion(cnn_random, cnn_random.params, args.pop("images"),
                          args.pop("target"), **args)
