"""TCAV on a model whose answer is known by hand: logit 0 = +mean redness, logit 1 = -."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxviz import concepts
from jaxviz.concepts import sets
from jaxviz.core import objectives
from jaxviz.core import probe as probe_lib

S = 8


class RedNet(nnx.Module):
    """conv1: 1x1, channel 0 = red - (green + blue) / 2, channel 1 = brightness;
    logits = dense(mean over positions of relu(conv1))."""

    def __init__(self):
        self.conv1 = nnx.Conv(3, 2, (1, 1), rngs=nnx.Rngs(0))
        self.conv1.kernel[...] = jnp.array([[[[1.0, 1 / 3], [-0.5, 1 / 3], [-0.5, 1 / 3]]]])
        self.conv1.bias[...] = jnp.zeros(2)
        self.head = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        self.head.kernel[...] = jnp.array([[4.0, -4.0], [0.3, 0.2]])
        self.head.bias[...] = jnp.zeros(2)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv1(x)).mean(axis=(1, 2)))


def coloured(rng, n, rgb=None):
    """n (S, S, 3) images: a noisy grey background with a 4x4 patch of colour rgb (random)."""
    x = np.clip(rng.uniform(0.3, 0.6, (n, 1, 1, 1)) + rng.normal(0, 0.03, (n, S, S, 3)), 0, 1)
    for i in range(n):
        c = rng.uniform(0, 1, 3) if rgb is None else np.asarray(rgb) + rng.uniform(-.05, .05, 3)
        y0, x0 = rng.integers(0, S - 4, 2)
        x[i, y0:y0 + 4, x0:x0 + 4] = np.clip(c, 0, 1)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    probe = probe_lib.from_model(RedNet(), input_shape=(S, S, 3), input_range=(0.0, 1.0))
    data = {"images": coloured(rng, 24, (0.9, 0.5, 0.5)),   # reddish: relu(conv1) active
            "red": coloured(rng, 20, (0.95, 0.1, 0.1)),
            "random_set": coloured(rng, 20), "pool": coloured(rng, 100)}
    result = concepts.tcav(probe, probe.params, data["images"], 0,
                           {"red": data["red"], "random_set": data["random_set"]},
                           data["pool"], layer="conv1", key=jax.random.key(0), n_runs=10,
                           steps=100, n_random_sets=3)
    return probe, data, result


def test_directional_derivative_is_gradient_dot_cav(setup):
    probe, data, _ = setup
    x = data["images"][:6]
    g = np.asarray(concepts.layer_gradients(probe, probe.params, x, "conv1", 1))
    # by hand: logit_1 = sum_c W[c, 1] mean_p relu(a_pc) -> d/da_pc = W[c, 1] [a_pc > 0] / P
    a = np.asarray(probe.run(probe.params, x)[1]["conv1"])
    by_hand = (a > 0) * np.asarray(RedNet().head.kernel[...])[:, 1] / (S * S)
    np.testing.assert_allclose(g, by_hand.reshape(6, -1), rtol=1e-5, atol=1e-8)
    v = np.random.default_rng(1).normal(size=(3, g.shape[1])).astype(np.float32)
    np.testing.assert_allclose(np.asarray(concepts.directional_derivatives(g, v)),
                               by_hand.reshape(6, -1) @ v.T, rtol=1e-4, atol=1e-7)


def test_red_concept_passes_for_red_logit_and_random_does_not(setup):
    _, _, r = setup
    red, rand = r.concepts.index("red"), r.concepts.index("random_set")
    # logit 0 grows with redness at every active position: every image, every run agrees
    np.testing.assert_array_equal(r.scores[red], 1.0)
    assert r.significant[red] and not r.significant[rand]
    assert np.mean(r.accuracy[red]) > 0.9  # red patches vs random colours: mostly separable


def test_random_sets_are_scored_like_concepts(setup):
    _, _, r = setup
    assert r.random_set_scores.shape == (3, 10)
    # a fixed random set's runs share its images: its spread over runs is below the
    # random-concept runs' (which draw fresh positives), the reason for test="random_sets"
    assert r.random_set_scores.std(axis=1).mean() < r.random_scores.std()


def test_objective_target_equals_class_index_and_opposite_logit_flips(setup):
    probe, data, r = setup
    kw = dict(layer="conv1", key=jax.random.key(0), n_runs=10, steps=100, n_random_sets=3)
    sets_ = {"red": data["red"], "random_set": data["random_set"]}
    by_obj = concepts.tcav(probe, probe.params, data["images"], objectives.class_logit(0),
                           sets_, data["pool"], **kw)
    np.testing.assert_array_equal(by_obj.scores, r.scores)
    flipped = concepts.tcav(probe, probe.params, data["images"],
                            -1.0 * objectives.class_logit(0), sets_, data["pool"], **kw)
    np.testing.assert_allclose(flipped.scores, 1.0 - r.scores, atol=1e-6)  # no derivative is 0


def test_significance_is_bonferroni_over_concepts():
    rng = np.random.default_rng(0)
    rand = rng.uniform(0.3, 0.7, 20)
    scores = np.stack([rng.uniform(0.3, 0.7, 20), rng.uniform(0.7, 0.9, 20)])
    p, adj, sig = concepts.significance(scores, rand, 0.05)
    from scipy import stats
    np.testing.assert_allclose(p, [stats.ttest_ind(s, rand).pvalue for s in scores])
    np.testing.assert_allclose(adj, np.minimum(1, 2 * p))
    assert list(sig) == list(adj < 0.05)
    t = (scores[1].mean() - rand.mean()) / (rand.std(ddof=1) * np.sqrt(1 + 1 / 20))
    np.testing.assert_allclose(concepts.prediction_test(scores[1], rand),
                               2 * stats.t.sf(abs(t), 19))
    assert concepts.t_test(np.ones(5), np.full(5, 0.5)) == 0.0  # both constant, different


def test_result_table_and_json(setup):
    _, _, r = setup
    out = json.loads(json.dumps(r.to_json()))
    row = out["table"][r.concepts.index("red")]
    assert row["score_mean"] == pytest.approx(r.scores[0].mean())
    assert out["table"][-1]["concept"] == "(random)"
    assert out["random_scores"] == pytest.approx(r.random_scores.tolist())
    assert "red" in str(r) and "Bonferroni over 2" in str(r)


def test_concepts_from_folder_and_generator(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("stripes", "dots"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i}.png")
    got = sets.load_concepts(f"folder:{tmp_path}", (S, S, 3), (0.0, 1.0))
    assert list(got) == ["dots", "stripes"]
    want = np.asarray(Image.open(tmp_path / "dots" / "1.png"), np.float32) / 255
    np.testing.assert_allclose(got["dots"][1], want)
    gen = sets.load_concepts(lambda key, n: {"g": np.zeros((n, S, S, 3), np.uint8)}, (S, S, 3),
                             key=jax.random.key(0), n=3)
    assert gen["g"].shape == (3, S, S, 3)


def test_bad_inputs_are_named(setup):
    probe, data, _ = setup
    with pytest.raises(ValueError, match=r"concepts\['red'\]: expected images \(N, 8, 8, 3\)"):
        sets.load_concepts({"red": np.zeros((4, 5, 5, 3))}, (S, S, 3))
    with pytest.raises(ValueError, match="target must be a class index"):
        concepts.layer_gradients(probe, probe.params, data["images"], "conv1", "cat")
    with pytest.raises(ValueError, match="test='random_sets' needs n_random_sets >= 5"):
        concepts.tcav(probe, probe.params, data["images"], 0, {"red": data["red"]},
                      data["pool"], layer="conv1", key=jax.random.key(0), test="random_sets")
    with pytest.raises(ValueError, match="n_runs must be >= 2"):
        concepts.tcav(probe, probe.params, data["images"], 0, {"red": data["red"]},
                      data["pool"], layer="conv1", key=jax.random.key(0), n_runs=1)
