"""ROAR (experiments/roar.py) in a tiny configuration: rankings and removal by hand, the
Sobel baseline against scipy, one grid model against the same model trained alone on
images masked outside the program, and a rerun that skips finished methods with the same
numbers."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from experiments import roar
from jaxviz.train import many

TINY = roar.RoarConfig(methods=("saliency", "random"), fractions=(0.3, 0.7), seeds=(0, 1),
                       n_train=64, n_test=32, width=4, epochs=1, batch_size=32, chunk=32)


def test_rank_pixels_by_hand():
    scores = jnp.asarray([[[3.0, 1.0], [2.0, 2.0]]])
    orders = {tuple(np.asarray(roar.rank_pixels(scores, jax.random.key(k))).ravel())
              for k in range(12)}
    # 3 is first, 1 is last, the tied 2s take places 1 and 2 in either order.
    assert orders == {(0, 3, 1, 2), (0, 3, 2, 1)}
    with pytest.raises(ValueError, match="finite"):
        roar.rank_pixels(jnp.asarray([[[np.nan, 1.0]]]), jax.random.key(0))


def test_removed_replaces_the_top_k_pixels_by_the_mean():
    images = jnp.arange(8.0).reshape(1, 2, 2, 2)
    ranks = jnp.asarray([[[2, 0], [3, 1]]])
    out = np.asarray(roar.removed(images, ranks, 2, jnp.asarray([-1.0, -2.0])))
    want = np.asarray(images).copy()
    want[0, 0, 1] = want[0, 1, 1] = [-1.0, -2.0]  # ranks 0 and 1, both channels
    np.testing.assert_array_equal(out, want)


def test_sobel_is_scipys_edge_magnitude():
    x = np.random.default_rng(0).random((2, 7, 9, 2)).astype(np.float32)
    # scipy smooths along every other axis: one 2-D image at a time
    want = [sum(np.hypot(ndimage.sobel(img[..., c], axis=0, mode="nearest"),
                         ndimage.sobel(img[..., c], axis=1, mode="nearest")) for c in range(2))
            for img in x]
    np.testing.assert_allclose(np.asarray(roar.sobel(jnp.asarray(x))), want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("roar")
    return out, roar.run(TINY, out, log=lambda s: None)


def test_results_written_per_method_and_whole(first):
    out, res = first
    assert json.loads((out / "results.json").read_text())["methods"] == res["methods"]
    for name in TINY.methods:
        saved = json.loads((out / "methods" / f"{name}.json").read_text())
        acc = np.asarray(saved["accuracy"])
        assert acc.shape == (2, 2) and np.all((acc >= 0) & (acc <= 1))
        assert saved["models_in_program"] == 4  # 2 fractions x 2 seeds in one program
    assert (out / "roar.png").stat().st_size > 10_000


def test_a_grid_model_is_the_model_trained_alone_on_masked_images(first):
    """Grid model (fraction 0.7, seed 1) against fit_many of that one model on images
    whose top pixels were replaced before training (the default view)."""
    sets = roar.load_data(TINY)
    x, y = sets[0], sets[1]
    key = jax.random.key(3)
    ranks = np.asarray(roar.rank_pixels(jax.random.uniform(key, x.shape[:3]), key))[None]
    test_ranks = np.zeros((1, *sets[2].shape[:3]), np.int16)
    grid = roar.retrain(TINY, ["r"], ranks, test_ranks, sets, None)
    k, mean = round(0.7 * 28 * 28), x.mean((0, 1, 2))
    masked = np.asarray(roar.removed(jnp.asarray(x), jnp.asarray(ranks[0]), k, jnp.asarray(mean)))
    alone = many.fit_many(many.stack_models([roar.make_model(TINY, x.shape[1:], 1)]),
                          TINY.train_config(1), (masked, y), seeds=[1])
    np.testing.assert_allclose(grid["train_loss"][0, 1, 1], alone.losses[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(grid["train_loss"][0, 0, 1], alone.losses[0])  # fractions differ


def test_a_rerun_skips_finished_methods_with_the_same_numbers(first, monkeypatch):
    out, res = first
    (out / "methods" / "random.json").unlink()  # as if killed before random finished
    calls, logs = [], []
    original = roar.retrain
    monkeypatch.setattr(roar, "retrain", lambda cfg, names, *a, **k: (
        calls.append(list(names)), original(cfg, names, *a, **k))[1])
    again = roar.run(TINY, out, log=logs.append)
    assert calls == [["random"]]
    assert any("already finished: saliency" in line for line in logs)
    assert numbers(again) == numbers(res)
    calls.clear()
    assert numbers(roar.run(TINY, out, log=logs.append)) == numbers(res) and calls == []


def numbers(results):
    return results["base_accuracy"], {m: (r["accuracy"], r["last_epoch_train_loss"])
                                      for m, r in results["methods"].items()}


def test_another_config_in_the_same_directory_is_refused(first):
    out, _ = first
    with pytest.raises(ValueError, match="another config"):
        roar.run(dataclasses.replace(TINY, epochs=2), out, log=lambda s: None)
    with pytest.raises(ValueError, match="methods must be"):
        roar.run(dataclasses.replace(TINY, methods=("saliency", "nope")), out)
