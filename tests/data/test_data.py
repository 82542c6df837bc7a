import gzip
import io
import struct

import numpy as np
import pytest

from jaxviz import data


def test_bundled_is_real_stratified_and_deterministic(mnist):
    assert mnist.x_train.shape == (4000, 28, 28, 1) and mnist.x_val.shape == (1000, 28, 28, 1)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
    assert 0.0 <= mnist.x_train.min() and mnist.x_train.max() <= 1.0
    assert np.bincount(mnist.y_train).tolist() == [400] * 10
    assert np.bincount(mnist.y_val).tolist() == [100] * 10
    # real digits: mostly background, strokes near 1
    assert 0.08 < mnist.x_train.mean() < 0.2 and (mnist.x_train > 0.99).mean() > 0.02
    again = data.load_bundled()
    assert np.array_equal(again.x_val, mnist.x_val) and np.array_equal(again.y_train, mnist.y_train)


def _write_idx(path, array, magic_dims=None, gz=True):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:  # closed here: Python 3.13 drops unflushed gzip data
        f.write(blob)


def _fake_mnist_dir(tmp_path, n_train=60, n_test=10, gz=True, label_count=None):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        suffix = ".gz" if gz else ""
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}",
                   rng.integers(0, 256, (n, 28, 28)), gz=gz)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}",
                   rng.integers(0, 10, (label_count or n,)), gz=gz)
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_roundtrip(tmp_path, gz):
    d = data.load_idx_dir(_fake_mnist_dir(tmp_path, gz=gz))
    assert d.x_train.shape == (60, 28, 28, 1) and d.x_val.shape == (10, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and d.y_val.dtype == np.int32
    raw = data.read_idx(next(tmp_path.glob("train-images*")))
    assert np.allclose(d.x_train[..., 0], raw / 255.0)


def test_idx_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_idx_dir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load_idx_dir(tmp_path)
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x09\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(bad)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(struct.pack(">HBB3I", 0, 8, 3, 5, 28, 28) + b"\x00" * 100)
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(trunc)
    (tmp_path / "m").mkdir()
    _fake_mnist_dir(tmp_path / "m")
    _write_idx(tmp_path / "m" / "train-labels-idx1-ubyte.gz", np.zeros(59))
    with pytest.raises(ValueError, match="60 images but 59 labels"):
        data.load_idx_dir(tmp_path / "m")


def test_full_mnist_never_falls_back_to_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXVIZ_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError):
        data.load("mnist")


def test_download_failure_names_files_and_place(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise OSError("network unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match="place the files") as err:
        data.download("mnist", tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(err.value) and str(tmp_path) in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_download_verifies_checksum(tmp_path, monkeypatch):
    def wrong_bytes(url, timeout=None):
        return io.BytesIO(b"not mnist")

    monkeypatch.setattr(data.urllib.request, "urlopen", wrong_bytes)
    with pytest.raises(ValueError, match="SHA-256"):
        data.download("mnist", tmp_path)
    assert not list(tmp_path.iterdir())
