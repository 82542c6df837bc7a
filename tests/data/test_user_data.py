"""A user's own model file and images: registry specs, the .npz and image-folder loaders
(pixel rule, resize, stratified split, one clear error per bad input), and the README's
commands through the installed console script from a directory outside the repository."""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxviz import registry, user_data

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "experiments" / "examples" / "user_models_example.py"
JAXVIZ = pathlib.Path(sys.executable).parent / "jaxviz"


def colour_npz(path, n_per_class=8, classes=3, shape=(32, 32, 3), dtype=np.uint8):
    """Each class brightens its own channel: x (N, H, W, C) uint8, y (N,)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), n_per_class)
    x = (rng.random((len(y), *shape)) * 80).astype(np.uint8)
    for c in range(classes):
        x[y == c, ..., c % shape[-1]] += 150
    np.savez(path, x=x.astype(dtype), y=y)
    return x, y


# ---- registry: file and module specs, ModelSpec ----------------------------------------

def test_file_spec_builds_and_is_canonical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(EXAMPLE, tmp_path)
    built = registry.build(f"{rel}:colour_cnn")
    assert (built.input_shape, built.input_range, built.num_classes) == ((32, 32, 3), (0.0, 1.0), 10)
    assert registry.canonical(f"{rel}:colour_cnn") == f"{EXAMPLE}:colour_cnn"
    assert registry.canonical("pkg.mod:f") == "pkg.mod:f"
    # The same file twice is one module: equal probes, so compiled analyses are reused.
    again = registry.build(f"{EXAMPLE}:colour_cnn")
    assert type(again.model) is type(built.model)


def test_module_spec_from_the_current_directory(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "my_models_cwd.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    built = registry.build("my_models_cwd:colour_cnn")
    assert type(built.model).__module__ == "my_models_cwd" and built.input_shape == (32, 32, 3)


def test_spec_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="file .*nowhere.py' does not exist"):
        registry.build(f"{tmp_path}/nowhere.py:f")
    bad = tmp_path / "bad_models.py"
    bad.write_text(
        "from flax import nnx\nfrom jaxviz.registry import ModelSpec\n"
        "class Lin(nnx.Module):\n"
        "    def __init__(self, rngs):\n        self.d = nnx.Linear(12, 3, rngs=rngs)\n"
        "    def __call__(self, x):\n        return self.d(x.reshape(x.shape[0], -1))\n"
        "def wrong_k(seed):\n    return ModelSpec(Lin(nnx.Rngs(0)), (2, 2, 3), num_classes=5)\n"
        "def as_dict(seed):\n"
        "    class D(nnx.Module):\n"
        "        def __init__(self):\n            self.m = Lin(nnx.Rngs(0))\n"
        "        def __call__(self, x):\n            return {'logits': self.m(x)}\n"
        "    return ModelSpec(D(), (2, 2, 3), output='logits')\n"
        "def not_a_model(seed):\n    return 3\n")
    with pytest.raises(ValueError, match="declares num_classes=5 but the model outputs 3"):
        registry.build(f"{bad}:wrong_k")
    with pytest.raises(ValueError, match="must return a registry.ModelSpec.*got int"):
        registry.build(f"{bad}:not_a_model")
    with pytest.raises(ValueError, match="cannot import 'missing'"):
        registry.build(f"{bad}:missing")
    built = registry.build(f"{bad}:as_dict")
    probe = registry.to_probe(built)
    assert built.num_classes == 3 and probe(probe.params, np.ones((2, 2, 2, 3))).shape == (2, 3)


# ---- .npz --------------------------------------------------------------------------------

def test_npz_pixels_map_onto_the_input_range_and_split_is_stratified(tmp_path):
    x, y = colour_npz(tmp_path / "d.npz", n_per_class=10)
    ds = user_data.load_npz(tmp_path / "d.npz", (32, 32, 3), input_range=(-1.0, 1.0))
    got = np.concatenate([ds.x_train, ds.x_val])
    labels = np.concatenate([ds.y_train, ds.y_val])
    assert got.dtype == np.float32 and labels.dtype == np.int32
    # Independent: the same images in the loader's order, mapped by hand.
    train, val = user_data.stratified_fraction_split(y)
    order = np.concatenate([train, val])
    np.testing.assert_allclose(got, x[order] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(labels, y[order])
    assert np.bincount(ds.y_val).tolist() == [2, 2, 2]  # 20% of each class
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(y)


def test_npz_float_and_one_hot(tmp_path):
    x = np.random.default_rng(1).random((6, 4, 5, 1)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x[..., 0], y=np.eye(2)[[0, 1, 0, 1, 0, 1]])
    ds = user_data.load_npz(tmp_path / "f.npz", (4, 5, 1))
    both = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(map(tuple, both.reshape(6, -1).round(6))) == \
        sorted(map(tuple, x.reshape(6, -1).round(6)))
    assert sorted(np.concatenate([ds.y_train, ds.y_val]).tolist()) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("arrays,match", [
    (dict(x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([0, 1, 0, 1])),
     r"x must be \(N, 32, 32, 3\) .*got \(4, 8, 8, 3\)"),
    (dict(x=np.zeros((4, 32, 32, 3), np.uint8)), r"missing \['y'\], found \['x'\]"),
    (dict(x=np.zeros((4, 32, 32, 3), np.uint8), y=np.array([0, 1, 0])),
     "4 images but y holds 3 labels"),
    (dict(x=np.zeros((4, 32, 32, 3), np.uint8), y=np.array([0, 1, 0, 12])),
     r"labels must lie in \[0, 10\).*\[12\]"),
    (dict(x=np.full((4, 32, 32, 3), 3.0, np.float32), y=np.array([0, 1, 0, 1])),
     "outside the model's input range"),
    (dict(x=np.zeros((4, 32, 32, 3), np.int16), y=np.array([0, 1, 0, 1])), "dtype int16"),
    (dict(x=np.zeros((3, 32, 32, 3), np.uint8), y=np.array([0, 1, 1])),
     "class 0 has 1 example"),
])
def test_npz_errors_name_the_file(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as info:
        user_data.load_npz(path, (32, 32, 3), num_classes=10)
    assert str(path) in str(info.value)


def test_unreadable_npz_names_the_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=f"{path}: cannot read as .npz"):
        user_data.load_npz(path, (32, 32, 3))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        user_data.load_npz(tmp_path / "none.npz", (32, 32, 3))


# ---- image folders --------------------------------------------------------------------------

def image_tree(root, sizes=((12, 10), (7, 9))):
    """Two classes: 'blue' RGB PNGs and 'red' JPEGs (one gray), constant colours, mixed sizes."""
    for name, colour, ext in (("red", (200, 10, 10), ".jpg"), ("blue", (0, 0, 255), ".png")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", sizes[i % 2], colour).save(root / name / f"{i}{ext}")
    Image.new("L", (5, 5), 128).save(root / "red" / "gray.png")
    (root / "red" / "notes.txt").write_text("ignored: not an image")


def test_folder_tree_classes_resize_and_channels(tmp_path):
    image_tree(tmp_path / "imgs")
    ds = user_data.load_folder(tmp_path / "imgs", (8, 6, 3), num_classes=10)
    assert ds.class_names == ("blue", "red")  # sorted names -> labels 0, 1
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    assert x.shape == (11, 8, 6, 3) and np.bincount(y).tolist() == [5, 6]
    # Constant images stay constant through the bilinear resize; JPEG is lossy (tolerance).
    blue = x[y == 0].reshape(-1, 3)
    np.testing.assert_allclose(blue, np.tile([0, 0, 1.0], (len(blue), 1)), atol=1e-6)
    gray = [im for im in x[y == 1] if np.ptp(im.mean((0, 1))) < 0.02]
    assert len(gray) == 1 and abs(float(gray[0].mean()) - 128 / 255) < 1e-6
    one = user_data.load_folder(tmp_path / "imgs", (4, 4, 1))
    assert one.x_train.shape[1:] == (4, 4, 1)


def test_folder_errors_name_the_file_or_folder(tmp_path):
    image_tree(tmp_path / "a")
    (tmp_path / "a" / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'a' / 'empty'}: class folder holds no images"):
        user_data.load_folder(tmp_path / "a", (8, 8, 3))
    image_tree(tmp_path / "b")
    broken = tmp_path / "b" / "red" / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=f"{broken}: cannot read as an image"):
        user_data.load_folder(tmp_path / "b", (8, 8, 3))
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        user_data.load_folder(tmp_path / "c", (8, 8, 3))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        user_data.load_folder(tmp_path / "none", (8, 8, 3))
    image_tree(tmp_path / "d")
    with pytest.raises(ValueError, match="2 class folders but the model outputs 1"):
        user_data.load_folder(tmp_path / "d", (8, 8, 3), num_classes=1)


# ---- the README's commands, through the console script, outside the repository ---------------

def jaxviz(cwd, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(JAXVIZ), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"jaxviz {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    if not JAXVIZ.exists():
        pytest.fail(f"the console script {JAXVIZ} is missing: run `make install-test`")
    work = tmp_path_factory.mktemp("outside_repo")
    assert ROOT not in work.parents
    return work


def test_readme_example_from_outside_the_repository(outside):
    """README: `jaxviz train --model experiments/examples/user_models_example.py:colour_cnn`, then an
    analysis that finds model and data from the run alone."""
    out = jaxviz(outside, "train", "--model", f"{EXAMPLE}:colour_cnn", "--epochs", "1",
                 "--batch-size", "500", "--out", "run")
    assert "validation accuracy" in out and "(32, 32, 3)" in out
    jaxviz(outside, "attribute", "--checkpoint", "run", "--out", "figs", "--method",
           "grad_cam", "--images", "2", "--quiet")
    assert (outside / "figs" / "attribution_grad_cam.png").stat().st_size > 0


def test_module_spec_and_npz_data_through_the_console_script(outside):
    shutil.copy(EXAMPLE, outside / "my_models.py")
    colour_npz(outside / "images.npz")
    out = jaxviz(outside, "train", "--model", "my_models:colour_cnn", "--data", "npz:images.npz",
                 "--epochs", "1", "--batch-size", "8", "--out", "own")
    assert "npz:images.npz: 18 train / 6 validation" in out
