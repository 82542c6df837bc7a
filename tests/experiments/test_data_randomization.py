"""The data randomization test (experiments/data_randomization.py) in a tiny configuration:
the four similarity measures on maps with known answers (scipy's Spearman), the permuted
data, and a run whose rerun reuses both trained models and the finished method."""
import dataclasses

import numpy as np
import pytest
from scipy import stats

from experiments import data_randomization as D

TINY = D.DataRandomizationConfig(methods=("gradient",), n_train=32, n_images=3, width=4,
                                 epochs_true=1, epochs_permuted=1, batch_size=16)


def test_similarities_on_maps_with_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 12, 12)).astype(np.float32)
    b = rng.normal(size=(3, 12, 12)).astype(np.float32)
    same = D.similarities(a, a)
    for k in D.MEASURES:
        np.testing.assert_allclose(same[k], 1.0, atol=1e-5)
    flipped = D.similarities(a, -a)  # the sign only: |map| measures cannot see it
    np.testing.assert_allclose(flipped["spearman"], -1.0, atol=1e-6)
    for k in ("spearman_abs", "ssim_abs", "hog_abs"):
        np.testing.assert_allclose(flipped[k], 1.0, atol=1e-5)
    other = D.similarities(a, b)
    want = [stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)]
    np.testing.assert_allclose(other["spearman"], want, atol=1e-6)
    assert max(abs(v) for v in other["hog_abs"]) < 0.5  # unrelated noise


def test_permuted_labels_are_a_permutation_of_the_same_images():
    true, perm, x, y = D.datasets(TINY)
    np.testing.assert_array_equal(true.x_train, perm.x_train)
    np.testing.assert_array_equal(np.sort(true.y_train), np.sort(perm.y_train))
    assert (true.y_train != perm.y_train).mean() > 0.5
    np.testing.assert_array_equal(perm.x_val, perm.x_train)  # its val accuracy is its fit
    assert len(x) == len(y) == 3


def test_run_writes_and_a_rerun_reuses(tmp_path):
    logs = []
    res = D.run(TINY, tmp_path, log=logs.append)
    r = res["methods"]["gradient"]
    assert set(D.MEASURES) <= set(r) and all(len(r[k]) == 3 for k in D.MEASURES)
    assert all(-1 - 1e-6 <= v <= 1 + 1e-6 for k in D.MEASURES for v in r[k])
    assert (tmp_path / "data_randomization.png").stat().st_size > 0
    logs.clear()
    again = D.run(TINY, tmp_path, log=logs.append)
    assert sum("reused" in s for s in logs) == 3  # two models, one method
    assert again["methods"] == res["methods"]
    with pytest.raises(ValueError, match="another config"):
        D.run(dataclasses.replace(TINY, n_images=2), tmp_path)
