"""Filter grids, feature maps, their errors, and the figure files written for the main job."""
import jax
import matplotlib.image
import numpy as np
import pytest

from jaxviz import filters, io, report
from jaxviz.plot.arch import plot_feature_maps, plot_filters
from jaxviz.core.probe import layer_params


def _kernel(probe, layer):
    return np.asarray(layer_params(probe, probe.params, layer)["kernel"])


def _not_blank(path, minimum=20):
    img = matplotlib.image.imread(path)
    return len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > minimum


def test_filter_grid_modes_nnx(cnn_random):
    k1, k2 = _kernel(cnn_random, "conv1"), _kernel(cnn_random, "conv2")
    tiles = filters.filter_grid(cnn_random, cnn_random.params, "conv1")
    assert tiles.shape == (32, 3, 3)
    np.testing.assert_array_equal(tiles[5], k1[:, :, 0, 5])  # the Keras recipe's weights[:, :, 0, k]
    ch = filters.filter_grid(cnn_random, cnn_random.params, "conv2", in_channel=7)
    np.testing.assert_array_equal(ch[3], k2[:, :, 7, 3])
    mean = filters.filter_grid(cnn_random, cnn_random.params, "conv2", "mean")
    np.testing.assert_allclose(mean[9], k2[:, :, :, 9].mean(-1), rtol=1e-6)
    mosaic = filters.filter_grid(cnn_random, cnn_random.params, "conv2", "mosaic", max_out=5)
    assert mosaic.shape == (5, 16, 3, 3)
    np.testing.assert_array_equal(mosaic[4, 2], k2[:, :, 2, 4])
    assert filters.conv_layers(cnn_random, cnn_random.params, (1, 28, 28, 1)) == ["conv1", "conv2"]


def test_filter_grid_linen(resnet_random):
    assert filters.filter_grid(resnet_random, resnet_random.params, "stem").shape == (8, 3, 3)
    m = filters.filter_grid(resnet_random, resnet_random.params, "down2", "mosaic")
    assert m.shape == (16, 8, 3, 3)
    with pytest.raises(ValueError, match=r"'head' \(Dense\).*kernel of shape \(16, 10\)"):
        filters.filter_grid(resnet_random, resnet_random.params, "head",
                            sample_input=np.zeros((1, 28, 28, 1), np.float32))


def test_filter_grid_errors(cnn_random):
    p, x = cnn_random.params, np.zeros((1, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"unknown layer 'nope'; known layers: .*'conv1'.*'preds'"):
        filters.filter_grid(cnn_random, p, "nope", sample_input=x)
    with pytest.raises(ValueError, match=r"'dropout1' \(Dropout\) has no parameters"):
        filters.filter_grid(cnn_random, p, "dropout1", sample_input=x)
    with pytest.raises(ValueError, match=r"'dense1' \(Linear\).*\(9216, 128\)"):
        filters.filter_grid(cnn_random, p, "dense1", sample_input=x)
    with pytest.raises(ValueError, match=r"'nope' has no parameters.*\['conv1', 'conv2'\]"):
        filters.filter_grid(cnn_random, p, "nope")
    with pytest.raises(ValueError, match="mode must be one of"):
        filters.filter_grid(cnn_random, p, "conv1", "all")
    with pytest.raises(ValueError, match=r"in_channel must be an int in \[0, 1\)"):
        filters.filter_grid(cnn_random, p, "conv1", in_channel=1)
    with pytest.raises(ValueError, match="max_out"):
        filters.filter_grid(cnn_random, p, "conv2", "mosaic", max_out=0)


def test_feature_maps_match_probe_and_do_not_retrace(cnn_random, digits):
    x = digits[0][:2]
    acts = filters.feature_maps(cnn_random, cnn_random.params, x, ["conv1", "dropout1"])
    _, ref = cnn_random.run(cnn_random.params, x)
    assert acts["conv1"].shape == (2, 26, 26, 32) and acts["dropout1"].shape == (2, 12, 12, 64)
    np.testing.assert_allclose(acts["conv1"], ref["conv1"], rtol=1e-5, atol=1e-6)
    before = filters._feature_maps_jit._cache_size()
    filters.feature_maps(cnn_random, cnn_random.params, x + 0.1, ["conv1", "dropout1"])
    assert filters._feature_maps_jit._cache_size() == before
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'; known layers: \['conv1'"):
        filters.feature_maps(cnn_random, cnn_random.params, x, "conv9")
    with pytest.raises(ValueError, match="images must be a batch"):
        filters.feature_maps(cnn_random, cnn_random.params, x[0], "conv1")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) activations; layer 'preds'"):
        plot_feature_maps(np.zeros((2, 10)), "preds")


def test_filter_and_feature_figures_not_blank(cnn_random, digits, tmp_path):
    x, y = digits[0][:2], digits[1][:2]
    p = cnn_random.params
    t = filters.filter_grid(cnn_random, p, "conv1")
    a = io.save_figure(plot_filters(t, title="conv1", diverging=False), tmp_path / "f.png")[0]
    acts = filters.feature_maps(cnn_random, p, x, "conv1")
    b = io.save_figure(plot_feature_maps(acts["conv1"], "conv1", images=x, labels=y),
                       tmp_path / "m.png")[0]
    assert _not_blank(a) and _not_blank(b)


def _model_stages(probe, x, y, out, layers=None):
    """Architecture, filters and feature maps as the report runs them: {file name: path}, metrics."""
    inputs = report.Inputs(probe, probe.params, x, y, jax.random.key(0))
    written, metrics = {}, {}
    for stage in (report.ArchitectureStage(), report.FiltersStage(),
                  report.FeatureMapsStage(n_images=len(x), layers=layers)):
        done = report.run_stage(stage, inputs, out)
        written.update((p.name, p) for p in done.paths)
        metrics.update(stage.metrics(done.result))
    return written, metrics


def test_model_stages_nnx(cnn_random, digits, tmp_path):
    out, metrics = _model_stages(cnn_random, digits[0][:1], digits[1][:1], tmp_path)
    names = {"architecture.png", "architecture.svg", "summary.txt", "filters_conv1.png",
             "filters_conv2.png", "feature_maps_conv1.png", "feature_maps_conv2.png"}
    assert set(out) == names
    assert metrics == {"params": 1_199_882, "forward_flops": 23_984_896}
    for name in names:
        assert (tmp_path / name).stat().st_size > 0
        if name.endswith(".png"):
            assert _not_blank(tmp_path / name), name
    assert "1,199,882" in (tmp_path / "summary.txt").read_text()


def test_model_stages_linen_is_generic(resnet_random, digits, tmp_path):
    out, _ = _model_stages(resnet_random, digits[0][:1], digits[1][:1], tmp_path, ["stem"])
    convs = ["stem", "block1_conv1", "block1_conv2", "down2", "block2_conv1", "block2_conv2"]
    assert {f"filters_{c}.png" for c in convs} <= set(out)
    assert "feature_maps_stem.png" in out and _not_blank(out["feature_maps_stem.png"])


