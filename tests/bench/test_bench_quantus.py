"""The Quantus section's pure parts: layouts, curve reductions, agreement figures and the
translation of settings between the two libraries. Nothing here needs torch or Quantus:
the section itself checks the PyTorch twin's logits (to 1e-4) and every metric's agreement
whenever the peers extra is installed."""
import inspect
import sys

import numpy as np
import pytest

from experiments.bench import quantus_cases as pq
from experiments.bench import run
from jaxviz import evaluate as ev


def test_rows_without_the_peers_extra_names_it(monkeypatch):
    for name in ("torch", "captum", "captum.attr", "quantus"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e \.\[peers\]"):
        run.section_rows("quantus", quick=True)


def test_nchw_moves_channels_first_and_adds_one_to_pixel_maps():
    a = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    out = pq.nchw(a)
    assert out.shape == (2, 2, 3, 4)
    assert out[1, 0, 2, 3] == a[1, 2, 3, 0] and out[0, 1, 1, 2] == a[0, 1, 2, 1]
    assert pq.nchw(a[..., 0]).shape == (2, 1, 3, 4)
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, C\); got shape \(3, 4\)"):
        pq.nchw(np.zeros((3, 4)))


def test_trapz_and_aopc_against_hand_sums():
    curve = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(pq.trapz(curve), [0.5 + 1.5, 2.0])
    drops = np.array([[0.3, 0.6], [0.0, -0.3]])
    np.testing.assert_allclose(pq.aopc(drops), [0.9 / 3, -0.1])  # the k = 0 drop counts
    np.testing.assert_allclose(pq.reduce_curve("mean", curve), [1.0, 1.0])
    np.testing.assert_array_equal(pq.reduce_curve(None, [1, 2]), [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown reduction 'median'"):
        pq.reduce_curve("median", curve)


def test_exact_agreement_figures_and_nan_places():
    fields = pq.exact_agreement([2.0, -4.0, np.nan], [2.5, -4.0, np.nan])
    assert fields == {"max_abs_diff": 0.5, "max_rel_diff": 0.5 / 4.0}
    moved = pq.exact_agreement([np.nan, 1.0], [1.0, 1.0])
    assert moved["max_abs_diff"] == np.inf and moved["nan_mismatch"] == 1
    with pytest.raises(ValueError, match=r"shapes differ: peer \(2,\), jaxviz \(3,\)"):
        pq.exact_agreement([1.0, 2.0], [1.0, 2.0, 3.0])


def test_distribution_leaves_nans_out():
    d = pq.distribution([1.0, 3.0, np.nan], [2.0, 2.0, 2.0])
    assert d == {"peer_mean": 2.0, "peer_std": 1.0, "jax_mean": 2.0, "jax_std": 0.0}


def test_completeness_is_compared_as_error_equal_zero():
    case = next(c for c in pq.cases(28, 28, masks=False) if c.metric == "completeness")
    np.testing.assert_array_equal(pq.ours_scores(case, [0.0, 1e-3]), [1.0, 0.0])


@pytest.mark.parametrize("h, w, masks", [(28, 28, False), (60, 60, True)])
def test_every_case_is_a_registered_metric_with_options_it_takes(h, w, masks):
    cases = pq.cases(h, w, masks=masks)
    names = [c.metric for c in cases]
    assert len(set(names)) == len(names)
    assert ("pointing_game" in names) == masks  # localisation only where masks exist
    for c in cases:
        spec = ev.get(c.metric)  # raises for an unknown name
        params = inspect.signature(spec.fn).parameters
        assert set(c.jax) <= set(params), (c.metric, set(c.jax) - set(params))
        assert c.kind in (pq.EXACT, pq.SAMPLED, pq.CRASH)
        # Quantus' own preprocessing off, or per image as jaxviz does it
        if "normalise_func_kwargs" in c.q_init:
            assert c.q_init["normalise_func_kwargs"] == {"normalise_axes": (1, 2, 3)}
        else:
            assert c.q_init.get("normalise") is False, c.metric


def test_settings_are_translated_one_to_one():
    by = {c.metric: c for c in pq.cases(60, 60, masks=True)}
    pf = by["pixel_flipping"]
    assert pf.q_init["features_in_step"] == pf.jax["pixels_per_step"] == 60
    assert pf.q_init["perturb_baseline"] == pf.jax["baseline"] == "black"
    assert pf.q_call["softmax"] and pf.jax["score"] == "prob"
    rp = by["region_perturbation_lerf"]
    assert (rp.q_init["order"], rp.q_init["regions_evaluation"], rp.q_init["patch_size"]) == (
        "lerf", rp.jax["n_regions"], rp.jax["patch_size"])
    fc = by["faithfulness_correlation"]
    assert fc.q_init["nr_runs"] == fc.jax["n_runs"] and not fc.q_call["softmax"]
    assert fc.q_init["subset_size"] == fc.jax["subset_size"] == 900
    mc = by["monotonicity_correlation"]
    assert mc.q_init["features_in_step"] == mc.jax["pixels_per_step"]
    assert 3600 % mc.jax["pixels_per_step"] == 0
    assert list(by["road_morf"].q_init["percentages"]) == list(by["road_morf"].jax["percentages"])
    ms = by["max_sensitivity"]
    assert ms.q_init["lower_bound"] == ms.jax["radius"] and ms.q_init["nr_samples"] == 10
    assert by["local_lipschitz_estimate"].q_init["perturb_std"] == by[
        "local_lipschitz_estimate"].jax["sigma"]
    assert by["top_k_intersection"].q_init["k"] == by["top_k_intersection"].jax["k"]
    # Quantus 0.6.0's NonSensitivity breaks for more than one pixel a step: per pixel at
    # 28x28 (compared), a recorded crash at 60x60
    assert by["non_sensitivity"].kind == pq.CRASH
    small = {c.metric: c for c in pq.cases(28, 28, masks=False)}["non_sensitivity"]
    assert small.kind == pq.EXACT and small.q_init["features_in_step"] == 1


def test_chunk_size_keeps_pixels_per_chunk():
    assert pq.chunk_size(28, 28) == 256
    assert 16 <= pq.chunk_size(60, 60) <= 256 * 784 // 3600
    assert pq.chunk_size(224, 224) == 16
