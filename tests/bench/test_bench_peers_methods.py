"""The Captum side-by-side section on issue 16's methods (experiments/bench/peers_methods):
its pure parts (peers_agree), which need no torch (feature-mask translation, layout conversion, agreement
figures, exact Shapley values), and its skip note when torch is absent."""
import itertools
import math
import sys

import numpy as np
import pytest

from experiments.bench import peers, peers_methods, run
from experiments.bench import peers_agree as pm


def test_rows_without_torch_names_the_extra(monkeypatch):
    for name in ("torch", "captum", "captum.attr"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError) as err:
        run.section_rows("peers_methods", quick=True)
    assert str(err.value) == peers.MISSING == peers_methods.MISSING


@pytest.mark.parametrize("grid, n_features", [((4, 4), 49), ((10, 10), 9), ((28, 28), 1)])
def test_captum_feature_mask_is_the_jaxviz_grid(grid, n_features):
    mask = pm.captum_feature_mask(grid, (28, 28))
    assert mask.shape == (1, 1, 28, 28) and mask.dtype == np.int64
    rows, cols = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    per_row = math.ceil(28 / grid[1])
    np.testing.assert_array_equal(mask[0, 0], rows // grid[0] * per_row + cols // grid[1])
    assert sorted(np.unique(mask)) == list(range(n_features))


def test_layout_round_trip_and_bad_rank():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (N, C, H, W)
    nhwc = pm.nchw_to_nhwc(a)
    assert nhwc.shape == (2, 4, 5, 3) and nhwc[1, 2, 3, 0] == a[1, 0, 2, 3]
    back = pm.nhwc_to_nchw(nhwc)
    np.testing.assert_array_equal(back, a)
    assert back.flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*shape \(3, 4\)"):
        pm.nchw_to_nhwc(np.zeros((3, 4)))


def test_agreement_figures():
    ref = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert pm.max_rel_diff(ref, ref + [[0, 0], [0.2, 0]]) == pytest.approx(0.05)
    assert pm.rel_error([[3.0, 4.0]], [[3.0, 0.0]]) == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="shapes differ"):
        pm.max_rel_diff(ref, ref[0])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5, 5))
    b = a.copy()
    b[1] = -a[1]
    b[2] = 2 * a[2] + 1  # correlation is scale- and shift-free
    assert pm.mean_correlation(a, b) == pytest.approx(1 / 3)
    const = np.stack([a[0], np.ones((5, 5)), a[2]])
    assert pm.mean_correlation(a, const) == pytest.approx(1.0)  # the constant map skipped


def test_all_coalitions_bit_order():
    z = pm.all_coalitions(3)
    assert z.shape == (8, 3)
    assert z[5].tolist() == [True, False, True] and not z[0].any() and z[7].all()


def _values(game, f):
    return np.array([[game(set(np.flatnonzero(row)))] for row in pm.all_coalitions(f)])


def test_exact_shapley_on_known_games():
    a = np.array([0.5, -2.0, 3.0, 1.0])
    np.testing.assert_allclose(pm.exact_shapley(_values(lambda s: a[list(s)].sum(), 4)),
                               a[None], atol=1e-12)  # additive: each feature its own term
    both = pm.exact_shapley(_values(lambda s: float({0, 1} <= s), 3))
    np.testing.assert_allclose(both, [[0.5, 0.5, 0.0]], atol=1e-12)  # a pure interaction
    # a random game, against the permutation definition (average marginal contribution)
    rng = np.random.default_rng(1)
    v = rng.standard_normal((16, 2))
    index = lambda s: sum(1 << i for i in s)  # noqa: E731
    perm = np.zeros((2, 4))
    for order in itertools.permutations(range(4)):
        for k, feat in enumerate(order):
            perm[:, feat] += v[index(order[:k + 1])] - v[index(order[:k])]
    np.testing.assert_allclose(pm.exact_shapley(v), perm / 24, atol=1e-12)
    with pytest.raises(ValueError, match="2\\^F rows"):
        pm.exact_shapley(np.zeros((6, 1)))


def test_coalition_images_and_pixels():
    x = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1) + 1
    mask = np.array([[0, 0, 1], [2, 2, 1]])
    z = np.array([[True, False, False], [False, True, True]])
    out = pm.coalition_images(x, -1.0, mask, z)
    assert out.shape == (2, 2, 2, 3, 1)
    np.testing.assert_array_equal(out[0, 1, ..., 0], [[7, 8, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(out[1, 0, ..., 0], [[-1, -1, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pm.to_pixels(np.array([[1.0, 2.0, 3.0]]), mask),
                                  [[[1, 1, 2], [3, 3, 2]]])


def test_throughput_fraction():
    # 50 passes x 64 images in 2 s = 1,600 rows/s, against 3,200 rows/s batched
    assert pm.throughput_fraction(50, 64, 2.0, 3200.0) == pytest.approx(0.5)
