"""Localisation metrics against ground-truth masks: known answers, hand-computed small
cases, an independent numpy implementation, batching, and bad input."""
import numpy as np
import pytest

from jaxviz import evaluate as E
from jaxviz.evaluate import localisation as L

NAMES = ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy",
         "top_k_intersection")


def _run(name, attributions, masks, images=None, **options):
    n, h, w = np.shape(masks)
    x = np.zeros((n, h, w, 1), np.float32) if images is None else images
    opts = {**E.get(name).quick, **options}
    return np.asarray(E.get(name).fn(None, None, x, 0, attributions, masks=masks, **opts).scores)


@pytest.fixture(scope="module")
def case():
    """6 random 12x12 maps (no ties), masks of random blobs (size >= 10)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 12, 12)).astype(np.float32)
    masks = np.zeros((6, 12, 12), bool)
    for i in range(6):
        top, left = rng.integers(0, 6, 2)
        masks[i, top:top + rng.integers(2, 7), left:left + 5] = True
    return a, masks


def test_registered_as_localisation():
    for name in NAMES:
        m = E.get(name)
        assert (m.family, m.direction, m.needs_masks) == ("localisation", "higher", True)


@pytest.mark.parametrize("name", NAMES)
def test_mask_aligned_map_scores_one_and_outside_map_zero(name, case):
    _, masks = case
    inside = masks.astype(np.float32) * np.linspace(1, 2, 144, dtype=np.float32).reshape(12, 12)
    k = int(masks.sum((1, 2)).min())  # top-k needs k <= |mask| to reach 1
    opts = dict(k=k) if name == "top_k_intersection" else {}
    np.testing.assert_allclose(_run(name, inside, masks, **opts), 1.0, atol=1e-6)
    outside = (~masks).astype(np.float32) * 3.0 + 0.5 * (~masks) * np.arange(144).reshape(12, 12)
    np.testing.assert_allclose(_run(name, outside, masks, **opts), 0.0, atol=1e-6)


def test_hand_computed_small_case():
    # 1x4 image, mask on pixels 1 and 2; map values 0.1, 0.4, -0.3, 0.2
    a = np.array([[[0.1, 0.4, -0.3, 0.2]]], np.float32)
    m = np.array([[[False, True, True, False]]])
    assert _run("pointing_game", a, m) == pytest.approx(1.0)  # max 0.4 at pixel 1
    # |a| = .1 .4 .3 .2: inside .7 of 1.0; raw: inside .1 of .4
    assert _run("relevance_mass_accuracy", a, m) == pytest.approx(0.7)
    assert _run("relevance_mass_accuracy", a, m, absolute=False) == pytest.approx(0.25)
    # K = 2: |a| top two are pixels 1 (.4) and 2 (.3), both inside; raw top two: 1 and 3
    assert _run("relevance_rank_accuracy", a, m) == pytest.approx(1.0)
    assert _run("relevance_rank_accuracy", a, m, absolute=False) == pytest.approx(0.5)
    # raw top 3: pixels 1, 3, 0 -> 1 of 3 inside; concept influence x 4 / 2
    assert _run("top_k_intersection", a, m, k=3) == pytest.approx(1 / 3)
    assert _run("top_k_intersection", a, m, k=3, concept_influence=True) == pytest.approx(2 / 3)
    assert _run("pointing_game", a, m, weighted=True) == pytest.approx(0.5)  # 1 - 2/4


def test_ties_count_their_expected_share():
    m = np.array([[[True, False, False, False]]])
    flat = np.ones((1, 1, 4), np.float32)
    assert _run("pointing_game", flat, m) == pytest.approx(0.25)
    # top 2 of [5, 1, 1, 1]: pixel 0 (inside), then one of three tied -> 1/3 inside
    a = np.array([[[1.0, 5.0, 1.0, 1.0]]], np.float32)
    m2 = np.array([[[True, False, True, False]]])
    assert _run("top_k_intersection", a, m2, k=2) == pytest.approx((0 + 2 / 3) / 2)
    # all-zero map: no relevance, mass undefined
    assert np.isnan(_run("relevance_mass_accuracy", np.zeros((1, 1, 4), np.float32), m))


def test_pointing_game_tolerance():
    m = np.zeros((1, 9, 9), bool)
    m[0, 4, 4] = True
    a = np.zeros((1, 9, 9), np.float32)
    a[0, 4, 6] = 1.0  # two pixels right of the mask
    assert _run("pointing_game", a, m) == 0.0
    assert _run("pointing_game", a, m, tolerance=1) == 0.0
    assert _run("pointing_game", a, m, tolerance=2) == 1.0
    a2 = np.zeros_like(a)
    a2[0, 6, 6] = 1.0  # distance sqrt(8) > 2: outside a disk of radius 2, inside its square
    assert _run("pointing_game", a2, m, tolerance=2) == 0.0


def _reference(name, a, m, k=None, absolute=False):
    """Independent numpy version on tie-free maps (Quantus' definitions, sort-based)."""
    a = np.abs(a) if absolute else a
    a, m = a.reshape(len(a), -1), m.reshape(len(m), -1)
    order = np.argsort(-a, axis=1)
    if name == "pointing_game":
        return m[np.arange(len(a)), a.argmax(1)].astype(float)
    if name == "relevance_mass_accuracy":
        return (a * m).sum(1) / a.sum(1)
    sizes = m.sum(1) if name == "relevance_rank_accuracy" else np.full(len(a), k)
    return np.array([m[i, order[i, :s]].mean() for i, s in enumerate(sizes)])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("absolute", [False, True])
def test_against_numpy_reference_and_one_by_one(name, absolute, case):
    a, masks = case
    opts = dict(absolute=absolute, **(dict(k=7) if name == "top_k_intersection" else {}))
    batched = _run(name, a, masks, **opts)
    want = _reference(name, a, masks, k=7, absolute=absolute)
    np.testing.assert_allclose(batched, want, rtol=1e-5, atol=1e-6)
    singles = np.concatenate([_run(name, a[i:i + 1], masks[i:i + 1], **opts) for i in range(6)])
    np.testing.assert_allclose(batched, singles, rtol=1e-6)


def test_channels_are_summed_and_second_call_compiles_nothing(case, compiles):
    a, masks = case
    images = np.zeros((6, 12, 12, 3), np.float32)
    split = np.stack([a * 0.5, a * 0.25, a * 0.25], -1)
    rank = lambda m, x=None: _run("relevance_rank_accuracy", m, masks, x, absolute=False)
    np.testing.assert_allclose(rank(split, images), rank(a))
    call = lambda: _run("relevance_rank_accuracy", split, masks, images)
    call()
    assert compiles(call, "float32[6,12,12,3]") == []


@pytest.mark.parametrize("bad, match", [
    (dict(attributions=np.zeros((6, 12, 11), np.float32)), "attributions must be"),
    (dict(attributions=np.zeros((6, 12, 12, 2), np.float32)), "attributions must be"),
    (dict(attributions=np.full((6, 12, 12), np.nan, np.float32)), "NaN"),
    (dict(masks=np.zeros((6, 12, 11), bool)), r"masks must be \(N, H, W\)"),
    (dict(masks=np.zeros((5, 12, 12), bool)), r"masks must be \(N, H, W\)"),
    (dict(masks=np.full((6, 12, 12), 0.5)), "boolean"),
    (dict(masks=np.zeros((6, 12, 12), bool)), "at least one pixel"),
])
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_clear_error(name, bad, match, case):
    a, masks = case
    args = {"attributions": a, "masks": masks, **bad}
    with pytest.raises(ValueError, match=match):
        _run(name, args["attributions"], args["masks"], np.zeros((6, 12, 12, 1), np.float32))


def test_bad_options():
    a, m = np.ones((1, 4, 4), np.float32), np.ones((1, 4, 4), bool)
    with pytest.raises(ValueError, match="k must be at most the number of pixels, 16"):
        _run("top_k_intersection", a, m, k=17)
    with pytest.raises(ValueError, match="tolerance"):
        _run("pointing_game", a, m, tolerance=-1)
    with pytest.raises(ValueError, match="absolute must be True or False"):
        _run("relevance_mass_accuracy", a, m, absolute="yes")


def test_check_maps_accepts_zero_one_masks():
    a, m = L.check_maps(np.zeros((1, 2, 2, 1)), np.ones((1, 2, 2)), np.array([[[0, 1], [1, 0]]]))
    assert a.shape == (1, 2, 2) and m.dtype == bool and int(m.sum()) == 2
