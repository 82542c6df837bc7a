import numpy as np

from experiments.long_runs import occlude_all
from jaxviz import occlusion


def test_grouped_occlusion_equals_one_call(cnn_random, mnist):
    """70 digits in padded groups of 32 (one compiled shape) == all 70 in one call."""
    x, y = mnist.x_val[:70], mnist.y_val[:70]
    grouped = occlude_all(cnn_random, x, y, group=32, quiet=True)
    whole = np.asarray(occlusion.occlusion(cnn_random, cnn_random.params, x, y,
                                           window=4, stride=2).attribution)
    assert grouped.shape == (70, 28, 28)
    np.testing.assert_allclose(grouped, whole, rtol=1e-5, atol=1e-5)
