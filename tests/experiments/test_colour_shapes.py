"""experiments.colour_shapes: seeded, balanced, shapes of the right area, and an .npz that
`--data npz:` reads for a 32x32x3 model."""
import math

import numpy as np
import pytest

from experiments import colour_shapes as cs
from jaxviz import user_data


def test_same_seed_same_data_other_seed_other_data():
    x, y = cs.make(3, seed=1)
    x2, y2 = cs.make(3, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(cs.make(3, seed=2)[0], x)
    assert x.shape == (27, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert np.bincount(y).tolist() == [3] * 9
    assert len(cs.CLASS_NAMES) == 9 and cs.CLASS_NAMES[3 * 2 + 1] == "green triangle"


@pytest.mark.parametrize("shape,area", [("square", lambda r: (2 * r) ** 2),
                                        ("circle", lambda r: math.pi * r ** 2),
                                        ("triangle", lambda r: 2 * r ** 2)])
def test_shape_masks_have_their_geometric_area(shape, area):
    for r in (4.0, 7.5):
        got = cs.shape_mask(shape, r, 16.3, 15.8).sum()  # off the pixel grid
        assert abs(got - area(r)) <= 0.15 * area(r), (shape, r, got, area(r))
    assert cs.shape_mask(shape, 5.0, 10.0, 20.0)[10, 20]  # the centre is inside


def test_object_has_the_class_shape_and_colour():
    """Inside each drawn object the class's channel is the brightest on average, and the
    object fills its bounding box as its shape does (square 1, circle pi/4, triangle 1/2;
    intervals wide enough for pixelated small shapes, disjoint so each shape is told apart)."""
    rng = np.random.default_rng(0)
    fill = {"square": (0.95, 1.0), "circle": (0.68, 0.9), "triangle": (0.45, 0.66)}
    for _ in range(3):
        for label in range(9):
            img, mask = cs.draw(rng, label)
            means = img[mask].mean(axis=0)
            assert np.argmax(means) == label % 3, (label, means)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
            lo, hi = fill[cs.SHAPES[label // 3]]
            assert lo <= mask.sum() / box <= hi, (label, mask.sum() / box)


def test_data_command_writes_an_npz_that_npz_data_reads(tmp_path):
    out = tmp_path / "shapes.npz"
    cs.main(["data", "--out", str(out), "--per-class", "5", "--seed", "3"])
    ds = user_data.load(f"npz:{out}", (32, 32, 3), (0.0, 1.0), 9)
    assert len(ds.x_train) + len(ds.x_val) == 45 and sorted(set(ds.y_val.tolist())) == list(range(9))
    x, _ = cs.make(5, seed=3)
    assert np.isclose(ds.x_train.max(), x.max() / 255)
    with np.load(out) as z:
        assert tuple(z["class_names"]) == cs.CLASS_NAMES
