"""DeepLIFT's MNIST experiment (experiments/deeplift_mnist.py) in a tiny configuration: the
log-odds measure against a numpy loop over the erased images, and a rerun that reuses the
trained model and the finished methods with the same numbers."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import deeplift_mnist as D

TINY = D.DeepLiftConfig(methods=("gradient_x_input", "random"), n_train=64, epochs=1,
                        batch_size=32, width=4, n_images=4, max_pixels=12, pixel_step=5,
                        only_correct=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deeplift")
    return out, D.run(TINY, out, log=lambda s: None)


def test_log_odds_drop_is_a_numpy_loop_over_erased_images(first_run):
    out, res = first_run
    ds = D.load_data(TINY)
    model, trained = D.trained_model(TINY, ds, out / "model", log=lambda s: None)
    assert not trained  # the checkpoint of the first run
    x = np.asarray(ds.x_val[res["images"]], np.float64)
    rng = np.random.default_rng(0)
    diff = rng.normal(size=x.shape[:3])
    diff[0, :3, :3] = 5.0  # ties, kept in raster order
    probe = D.probe_lib.from_model(model, input_shape=(28, 28, 1))
    got = np.asarray(D.log_odds_drop(D.analysis.static_fn(probe), probe.params,
                                     jnp.asarray(x, jnp.float32), jnp.asarray(diff, jnp.float32),
                                     counts=(0, 5, 40), source=8, target=3))

    def log_odds(imgs):
        z = np.asarray(probe(probe.params, jnp.asarray(np.stack(imgs), jnp.float32)))
        return z[:, 8] - z[:, 3]

    erased = []
    for i in range(len(x)):
        order = sorted(range(28 * 28), key=lambda p: (-diff[i].ravel()[p], p))
        for k in (0, 5, 40):
            img = x[i].copy().reshape(-1)
            for p in order[:k]:
                if diff[i].ravel()[p] > 0:  # only pixels that speak for the 8
                    img[p] = 0.0
            erased.append(img.reshape(28, 28, 1))
    want = np.repeat(log_odds(list(x)), 3) - log_odds(erased)
    np.testing.assert_allclose(got.ravel(), want, atol=1e-4)


def test_results_written_and_a_rerun_reuses_them(first_run):
    out, res = first_run
    assert set(res["methods"]) == {"gradient_x_input", "random"}
    for name, r in res["methods"].items():
        d = np.asarray(r["drop"]["3"])
        assert d.shape == (4, len(TINY.counts())) and r["counts"] == [0, 5, 10, 12]
        np.testing.assert_array_equal(d[:, 0], 0.0)  # nothing erased, nothing moves
        saved = json.loads((out / "methods" / f"{name}.json").read_text())
        assert saved["drop"] == r["drop"]
    # gradient x input speaks for the 8: erasing what it ranks first lowers the log-odds,
    # more than a random ranking does.
    gxi = np.asarray(res["methods"]["gradient_x_input"]["drop"]["3"])[:, -1].mean()
    rnd = np.asarray(res["methods"]["random"]["drop"]["3"])[:, -1].mean()
    assert gxi > 0 and gxi > rnd
    assert (out / "deeplift_mnist.png").stat().st_size > 0
    again = D.run(TINY, out, log=lambda s: None)
    assert not again["trained_now"] and again["methods"] == res["methods"]
    with pytest.raises(ValueError, match="another config"):
        D.run(D.DeepLiftConfig(**{**TINY.__dict__, "pixel_step": 3}), out)
    assert "| gradient_x_input |" in D.table(res)
