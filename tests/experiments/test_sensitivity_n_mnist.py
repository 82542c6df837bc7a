"""Sensitivity-n on digits (experiments/sensitivity_n_mnist.py) in a tiny configuration:
Ancona et al.'s equivalence (epsilon-LRP is gradient x input on a ReLU network) holds in
the numbers, and a rerun reuses the model and the finished methods."""
import numpy as np

from experiments import deeplift_mnist, sensitivity_n_mnist as S

TINY = S.SensitivityNConfig(
    methods=("gradient_x_input", "epsilon_lrp"), n_images=2, n_runs=4,
    model=deeplift_mnist.DeepLiftConfig(n_train=64, epochs=1, batch_size=32, width=4))


def test_epsilon_lrp_equals_gradient_x_input_and_a_rerun_reuses(tmp_path):
    res = S.run(TINY, tmp_path, log=lambda s: None)
    gxi = np.asarray(res["methods"]["gradient_x_input"]["correlation"])
    lrp = np.asarray(res["methods"]["epsilon_lrp"]["correlation"])
    assert gxi.shape == (2, 10) and np.isfinite(gxi).all()
    np.testing.assert_allclose(lrp, gxi, atol=1e-3)
    logs = []
    again = S.run(TINY, tmp_path, log=logs.append)
    assert sum("reused" in s for s in logs) == 3  # the model and both methods
    assert again["methods"] == res["methods"]
