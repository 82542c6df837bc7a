"""Checks on the briefly trained MnistCNN (the `trained_mnist` session fixture), in one file
so that `make test`'s one-worker-per-file schedule trains it once per run, not once per worker.
"""
import jax
import numpy as np
import optax

from jaxviz import filters, report
from jaxviz.attribution import sanity
from jaxviz.occlusion import occlusion
from tests.helpers.completeness import relative_delta

KEY = jax.random.key(42)
KEY_MAXIMIZE = jax.random.key(0)


def test_ig_completeness_trained(trained_mnist):
    p, params = trained_mnist.probe, trained_mnist.params
    x, t = trained_mnist.x_val[:8], trained_mnist.y_val[:8]
    rel = {n: relative_delta(p, params, x, t, n_steps=n) for n in (4, 64)}
    assert rel[64].max() <= 0.01, rel[64]
    assert rel[64].mean() < rel[4].mean()


def test_cascading_randomization_trained(trained_mnist):
    p, params = trained_mnist.probe, trained_mnist.params
    x, t = trained_mnist.x_val[:8], trained_mnist.y_val[:8]
    r = sanity.cascading_randomization(p, params, x, t, key=KEY)
    assert r["layers"] == ["preds", "dense1", "conv2", "conv1"]
    for m in ("saliency", "grad_cam"):
        assert r[m].shape == (4,) and np.all(np.abs(r[m]) <= 1)
        # Re-initialising the top layers must change the maps. Grad-CAM's correlation can
        # climb back once the conv layers are random too: it then follows the input's strokes.
        assert r[m][:2].max() < 0.8, (m, r[m])
    assert r["saliency"][-1] < 0.6, r["saliency"]


def test_trained_conv1_filters_and_maps(trained_mnist, tmp_path):
    t = trained_mnist
    tiles = np.asarray(filters.filter_grid(t.probe, t.params, "conv1"))
    assert tiles.shape == (32, 3, 3) and np.isfinite(tiles).all()
    acts = filters.feature_maps(t.probe, t.params, t.x_val[:4], "conv1")["conv1"]
    # relu maps of real digits: some channels respond, none is NaN
    assert np.isfinite(acts).all() and (np.asarray(acts) > 0).mean() > 0.05


def test_trained_classes_are_recognised(trained_mnist, tmp_path):
    """Each class's maximizing image is classified as that class with p >= 0.99.

    Test budget: 64 steps of Adam 0.2 (the main job uses 256 steps of Adam 0.05).
    """
    t, opt = trained_mnist, optax.adam(0.2)
    inputs = report.Inputs(t.probe, t.params, t.x_val[:8], t.y_val[:8], KEY_MAXIMIZE)
    stage = report.MaximizeStage(steps=64, optimizer=opt, layers=["conv1"], max_channels=8)
    done = report.run_stage(stage, inputs, tmp_path)
    out = stage.metrics(done.result)["maximize"]
    assert done.result.class_probs.argmax(1).tolist() == list(range(10))
    assert out["classified_as_target"] == 10
    assert min(out["class_prob"]) >= 0.99, out["class_prob"]
    assert out["tv_smooth"] < out["tv_plain"]
    assert sorted(p.name for p in done.paths) == sorted(
        f"maximize_{n}.png" for n in ("classes", "progress", "tv", "conv1", "trace"))
    assert all(p.stat().st_size > 1000 for p in done.paths)
    # the CLI's one-layer figure reuses the compiled class ascent (same settings)
    units = report.UnitsStage("logits", None, steps=64, optimizer=opt)
    u = report.run_stage(units, inputs, tmp_path)
    assert len(units.metrics(u.result)["values"]) == 10
    assert [p.name for p in u.paths] == ["maximize_logits_units.png"]


def test_incremental_equals_exact_trained(trained_mnist):
    t = trained_mnist
    x, y = t.x_val[:1], t.y_val[:1]
    a = occlusion(t.probe, t.params, x, y, window=4, stride=3)
    b = occlusion(t.probe, t.params, x, y, window=4, stride=3, method="incremental")
    np.testing.assert_allclose(b.extras["scores"], a.extras["scores"], atol=1e-4)
