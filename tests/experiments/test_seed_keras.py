"""The seed's recipe on its own Keras model, tiny: 1 epoch of model.fit on 256 digits, the
seed's lines only (accuracy, summary and architecture, filters, the seed's panels).

Independent sides: Keras' own `get_weights()` (the seed's `model.layers[0].get_weights()`)
and `model.predict` (softmax probabilities) against jaxviz's kernel and softmax(logits);
the panels' maps recomputed by hand where they have a closed form (Grad-CAM's channel
weights are the layer gradient's spatial mean)."""
import html.parser
import json

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments import seed_keras

PROMISED = ["summary.txt", "architecture.png", "filters_conv2d.png", "seed_recipe.png",
            "model.keras", "config.json", "metrics.json", "report.html", "report.md"]


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.src = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed_keras")
    seed_keras.main(["--small", "--out", str(out)])
    return out


def test_the_seed_model_is_the_seeds(run):
    model = seed_keras.keras.saving.load_model(run / "model.keras")
    kinds = [(type(layer).__name__, layer.name) for layer in model.layers]
    assert kinds == list(zip(["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense",
                              "Dropout", "Dense"], seed_keras.SEED_LAYERS))
    assert model.get_layer("preds").activation is seed_keras.keras.activations.softmax
    assert model.count_params() == 1_199_882  # the seed's Keras MNIST CNN


def test_files_report_and_keras_checks(run, capsys):
    for name in PROMISED:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    img = plt.imread(run / "seed_recipe.png")
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 8
    parser = _Images()
    parser.feed((run / "report.html").read_text())
    assert "seed_recipe.png" in parser.src and all((run / s).is_file() for s in parser.src)
    checks = json.loads((run / "metrics.json").read_text())["seed_recipe"]
    assert checks["kernel_max_abs_diff"] == 0.0  # the very arrays Keras holds
    assert checks["probs_max_abs_diff"] < 1e-5 and checks["same_predictions"]
    assert checks["class_trace_rose"] >= 8  # ascent on the logits raises most classes
    # A second run reuses model.keras (same config) instead of training again.
    config = json.loads((run / "config.json").read_text())
    model, history, seconds = seed_keras.load_or_train(config, None, run)
    assert history is seconds is None and "reusing" in capsys.readouterr().out
    assert model.count_params() == 1_199_882


def test_probe_survives_keras_calls_and_gives_logits(run):
    """A Probe built before model.predict still runs (Keras donates its variables' buffers);
    its output is the pre-softmax logits; Grad-CAM equals its closed form by hand."""
    keras = seed_keras.keras
    model = keras.saving.load_model(run / "model.keras")
    from jaxviz import attribution as A, data  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    probe = probe_lib.from_model(model)
    x = data.load_bundled().x_val[:4]
    probs = model.predict(x, verbose=0)
    logits = probe(probe.params, x)
    np.testing.assert_allclose(jax.nn.softmax(logits), probs, atol=1e-6)
    assert model.get_layer("preds").activation is keras.activations.softmax  # left as it was
    t = np.asarray(logits.argmax(-1))
    cam = A.grad_cam(probe, probe.params, x, t, layer="dropout", upsample=False).map

    def score(delta):
        out, acts = probe.run(probe.params, x, edits={"dropout": lambda a: a + delta})
        return jnp.take_along_axis(out, jnp.asarray(t)[:, None], 1).sum(), acts["dropout"]
    g, a = jax.grad(score, has_aux=True)(jnp.zeros((4, 12, 12, 64)))
    want = jnp.maximum(jnp.einsum("nhwk,nk->nhw", a, g.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(cam, want, rtol=1e-4, atol=1e-6 * float(jnp.abs(want).max()))
