"""Cluttered MNIST: deterministic from a seed, the mask is exactly the digit's pixels, the
digit lies inside the canvas, clutter comes from other digits; the CNN for it."""
import numpy as np
import pytest

from jaxviz import cluttered as C
from jaxviz.core import probe as probe_lib


@pytest.fixture(scope="module")
def source(mnist):
    """200 bundled training digits and their labels."""
    return mnist.x_train[:200], mnist.y_train[:200]


@pytest.fixture(scope="module")
def made(source):
    return C.clutter(*source, seed=3)


def test_same_seed_same_arrays_other_seed_differs(source, made):
    again = C.clutter(*source, seed=3)
    for a, b in zip(made, again):
        np.testing.assert_array_equal(a, b)
    other = C.clutter(*source, seed=4)
    assert not np.array_equal(made.images, other.images)
    assert not np.array_equal(made.origins, other.origins)


def test_shapes_and_types(made):
    assert made.images.shape == (200, 60, 60, 1) and made.images.dtype == np.float32
    assert made.masks.shape == (200, 60, 60) and made.masks.dtype == bool
    assert made.boxes.shape == (200, 4) and made.origins.shape == (200, 2)
    assert made.images.min() >= 0 and made.images.max() <= 1


def test_digit_inside_canvas_and_mask_is_its_pixels(source, made):
    digits, labels = source
    np.testing.assert_array_equal(made.labels, labels)
    assert made.origins.min() >= 0 and made.origins.max() <= 60 - 28
    for i in range(len(digits)):
        top, left = made.origins[i]
        expect = np.zeros((60, 60), bool)
        expect[top:top + 28, left:left + 28] = digits[i, ..., 0] > 0
        np.testing.assert_array_equal(made.masks[i], expect)
        frame = made.images[i, top:top + 28, left:left + 28, 0]
        assert np.all(frame >= digits[i, ..., 0])  # clutter never dims the digit


def test_boxes_are_tight(made):
    boxed = C.box_masks(made.boxes, 60)
    assert np.all(boxed | ~made.masks)  # every mask pixel inside its box
    for i, (t, l, b, r) in enumerate(made.boxes):
        m = made.masks[i]
        assert m[t].any() and m[b - 1].any() and m[:, l].any() and m[:, r - 1].any()
        assert boxed[i].sum() == (b - t) * (r - l)


def test_clutter_is_crops_of_other_digits(source, made):
    digits, _ = source
    bare = C.clutter(*source, seed=3, n_clutter=0)
    np.testing.assert_array_equal(bare.images[..., 0] > 0, bare.masks)  # nothing but the digit
    outside = np.where(made.masks, 0, made.images[..., 0])
    assert (outside > 0).any(axis=(1, 2)).mean() > 0.9  # clutter next to nearly every digit
    # clutter pixels are pixels of the digits (no new values, no blending)
    values = set(np.unique(digits).tolist())
    assert set(np.unique(outside).tolist()) <= values


def test_load_sets_for_fit(mnist):
    sets = C.load(0, source=mnist, train_copies=2)
    assert sets.x_train.shape == (2 * len(mnist.x_train), 60, 60, 1)
    np.testing.assert_array_equal(sets.y_train, np.tile(mnist.y_train, 2))
    assert not np.array_equal(sets.x_train[:10], sets.x_train[len(mnist.x_train):][:10])
    assert sets.x_val.shape == (len(mnist.x_val), 60, 60, 1)
    np.testing.assert_array_equal(sets.y_val, mnist.y_val)
    np.testing.assert_array_equal(C.load(0, source=mnist).val.images, sets.val.images)


@pytest.mark.parametrize("kwargs, match", [
    (dict(canvas=20), "canvas must be"),
    (dict(n_clutter=-1), "n_clutter"),
    (dict(clutter_size=29), "clutter_size"),
    (dict(threshold=1.0), "threshold"),
])
def test_bad_options(source, kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.clutter(*source, seed=0, **kwargs)


def test_bad_digits():
    with pytest.raises(ValueError, match="digits must be"):
        C.clutter(np.zeros((5, 28)), np.zeros(5, np.int32), seed=0)
    with pytest.raises(ValueError, match="labels must be"):
        C.clutter(np.ones((5, 28, 28, 1), np.float32), np.zeros(4, np.int32), seed=0)
    blank = np.ones((3, 28, 28), np.float32)
    blank[1] = 0
    with pytest.raises(ValueError, match=r"digits \[1\] have no pixel"):
        C.clutter(blank, np.zeros(3, np.int32), seed=0)


def test_cnn_logits_and_a_cam_layer():
    from jaxviz.attribution import cam
    probe = probe_lib.from_model(C.cluttered_cnn(0))
    x = np.zeros((2, 60, 60, 1), np.float32)
    assert probe(probe.params, x).shape == (2, 10)
    assert probe.input_shape == (60, 60, 1)
    # the CAM layer is the rectified conv3 (Keras' Conv2D(activation="relu")), not the
    # raw convolution inside it
    assert cam.resolve_layer(probe, None, x.shape) == "conv3"
    rng = np.random.default_rng(0)
    _, acts = probe.run(probe.params, rng.random((2, 60, 60, 1), np.float32))
    assert float(acts["conv3"].min()) == 0.0 and float(acts["conv3.conv"].min()) < 0.0


def test_a_few_training_steps_beat_chance(mnist):
    """Digits without clutter, 2 short epochs: the trainer runs on the 60x60 model."""
    from jaxviz.train import TrainConfig, fit
    sub = type(mnist)(mnist.x_train[:768], mnist.y_train[:768], mnist.x_val[:200],
                      mnist.y_val[:200], "sub")
    sets = C.load(0, source=sub, n_clutter=0)
    res = fit(TrainConfig(epochs=2, batch_size=64, learning_rate=5e-3, seed=0), sets,
              model=C.cluttered_cnn(0), quiet=True)
    assert res.metrics[-1]["val_accuracy"] > 0.5  # chance is 0.1


def test_mask_overlay_figure(made):
    from jaxviz.plot.localisation import mask_overlay_figure
    maps = {"a": made.images[:3, ..., 0], "b": -made.images[:3, ..., 0]}
    fig = mask_overlay_figure(made.images[:3], made.masks[:3], maps, labels=made.labels[:3])
    assert len(fig.axes) == 3 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image + mask", "a", "b"]
    with pytest.raises(ValueError, match=r"columns\['a'\] must be \(3, 60, 60\)"):
        mask_overlay_figure(made.images[:3], made.masks[:3], {"a": made.images[:2, ..., 0]})


def test_experiment_scores_every_localisation_metric(made):
    """The experiment's scoring and table, on its model-free baselines: the digit's own
    mask as a map is perfect, a random map is near chance."""
    import jax
    from experiments import cluttered_mnist as exp
    x, masks = made.images[:32], made.masks[:32]
    boxes = C.box_masks(made.boxes[:32], 60)
    maps = exp.baseline_maps(x, jax.random.key(0)) | {"oracle": masks.astype(np.float32)}
    scores = exp.score_all(maps, x, made.labels[:32], masks, boxes)
    local = [n for n, m in exp.evaluate.METRICS.items() if m.family == "localisation"]
    assert set(scores["oracle"]) == set(local) | {"pointing_game (box)"}
    for col in ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy",
                "pointing_game (box)"):
        np.testing.assert_allclose(scores["oracle"][col], 1.0)
    chance = masks.mean()
    assert abs(scores["random"]["relevance_mass_accuracy"].mean() - chance) < 0.02
    rows = exp.table(scores)
    assert len(rows) == 1 + 3 and rows[2][0] == "input (baseline)"
    assert rows[3][1].startswith("1.000 [1.000, 1.000]")
