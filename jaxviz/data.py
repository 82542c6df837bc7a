"""MNIST-family data: the bundled 5,000 real digits, IDX files, and an opt-in download cache.

Every loader returns a `Dataset` of float32 images in [0, 1], shaped (N, 28, 28, 1), and
int32 labels (N,). Nothing here touches the network unless `download=True` is passed.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxviz import io

BUNDLED = "mnist_5k.npz"

# The four standard files of each set, with their SHA-256 (of the .gz files).
IDX_FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
SPLIT_COUNTS = {"train": 60000, "t10k": 10000}


class Dataset(NamedTuple):
    """x_*: (N, H, W, C) float32 ((N, 28, 28, 1) in [0, 1] for the MNIST family; a user's
    images in their model's input range, see jaxviz.user_data); y_*: (N,) int32;
    class_names: one name per class where the source has them (image folders)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    name: str
    class_names: tuple = ()


def to_float_images(images_u8: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 28, 28, 1) float32 in [0, 1]."""
    return (images_u8.astype(np.float32) / 255.0)[..., None]


def stratified_split(labels: np.ndarray, n_val_per_class: int, seed: int = 0):
    """Deterministic stratified split -> (train indices, validation indices), both sorted."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= n_val_per_class:
            raise ValueError(f"class {c} has {len(idx)} examples; cannot hold out {n_val_per_class}")
        val.append(rng.permutation(idx)[:n_val_per_class])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def load_bundled() -> Dataset:
    """The 5,000 real MNIST digits shipped with jaxviz: 4,000 train / 1,000 validation,
    stratified (400 / 100 per class), the same split on every machine."""
    with resources.files("jaxviz").joinpath("_data", BUNDLED).open("rb") as fh:
        with np.load(fh) as z:
            images, labels = z["images"], z["labels"].astype(np.int32)
    train, val = stratified_split(labels, n_val_per_class=100, seed=0)
    x = to_float_images(images)
    return Dataset(x[train], labels[train], x[val], labels[val], "bundled")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (raw or .gz): a uint8 array shaped by its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise ValueError(f"{path}: bad IDX magic number 0x{data[:4].hex()} "
                         f"(expected 0x00000801 for labels or 0x00000803 for images)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if body.size != expected:
        raise ValueError(f"{path}: truncated or padded: header says {dims} = {expected} values, "
                         f"file holds {body.size}")
    return body.reshape(dims)


def _find(directory: Path, gz_name: str) -> Path | None:
    for candidate in (directory / gz_name, directory / gz_name[:-3]):
        if candidate.exists():
            return candidate
    return None


def load_idx_dir(directory: str | os.PathLike, name: str = "mnist") -> Dataset:
    """Full MNIST or Fashion-MNIST from the four standard IDX files (.gz or raw) in directory.
    Train = the 60,000-image file, validation = the 10,000-image test file."""
    directory = Path(directory)
    if name not in IDX_FILES:
        raise ValueError(f"name must be one of {list(IDX_FILES)}; got {name!r}")
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {str(directory)!r} does not exist; place "
                                f"{list(IDX_FILES[name])} (or their unzipped forms) there")
    missing = [f for f in IDX_FILES[name] if _find(directory, f) is None]
    if missing:
        raise FileNotFoundError(f"{directory}: missing {missing} (gzipped or raw); "
                                f"or pass --download to fetch them into the cache")
    arrays = {f: read_idx(_find(directory, f)) for f in IDX_FILES[name]}
    out = []
    for split in ("train", "t10k"):
        images = arrays[f"{split}-images-idx3-ubyte.gz"]
        labels = arrays[f"{split}-labels-idx1-ubyte.gz"]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{directory}: {split} has {images.shape[0]} images but "
                             f"{labels.shape[0]} labels")
        if images.shape[1:] != (28, 28):
            raise ValueError(f"{directory}: {split} images are {images.shape[1:]}, expected (28, 28)")
        out += [to_float_images(images), labels.astype(np.int32)]
    return Dataset(*out, name=name)


def cache_dir() -> Path:
    return Path(os.environ.get("JAXVIZ_CACHE", Path.home() / ".cache" / "jaxviz"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def download(name: str = "mnist", directory: str | os.PathLike | None = None) -> Path:
    """Fetch the four IDX files into directory (default: cache_dir()/name), each verified by
    SHA-256 before it is written (atomically, by jaxviz.io). Explicit and opt-in: nothing
    calls it implicitly."""
    if name not in IDX_FILES:
        raise ValueError(f"name must be one of {list(IDX_FILES)}; got {name!r}")
    directory = Path(directory) if directory else cache_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    for fname, digest in IDX_FILES[name].items():
        target = directory / fname
        if target.exists() and sha256(target) == digest:
            continue
        try:
            payload = _fetch(MIRRORS[name] + fname)
        except OSError as err:
            raise RuntimeError(
                f"could not download {fname} ({err}); without network, place the files "
                f"{list(IDX_FILES[name])} in {directory} (or any directory passed as --data-dir)"
            ) from err
        got = hashlib.sha256(payload).hexdigest()
        if got != digest:
            raise ValueError(f"{fname}: SHA-256 {got} does not match the expected {digest}")
        io.write_bytes(target, payload)
    return directory


def load(source: str = "bundled", data_dir: str | os.PathLike | None = None,
         download_missing: bool = False) -> Dataset:
    """source: "bundled" (default, offline), "mnist" or "fashion_mnist".

    For the full sets the directory is data_dir, else $JAXVIZ_DATA_DIR, else the cache
    (filled only when download_missing). The bundle is never substituted for a full set.
    """
    if source == "bundled":
        return load_bundled()
    if source not in IDX_FILES:
        raise ValueError(f"data source must be 'bundled', 'mnist' or 'fashion_mnist'; got {source!r}")
    directory = data_dir or os.environ.get("JAXVIZ_DATA_DIR")
    if directory is None:
        directory = download(source) if download_missing else cache_dir() / source
    elif download_missing:
        download(source, directory)
    return load_idx_dir(directory, source)


def adapt_images(x: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Fit (N, 28, 28, 1) digits to a model's (H, W, C): centre-pad (or resize down), repeat
    the gray channel. Used when a user's model takes, e.g., 32x32x3 inputs."""
    h, w, c = input_shape
    n, h0, w0, c0 = x.shape
    if (h, w) != (h0, w0):
        if h >= h0 and w >= w0:
            top, left = (h - h0) // 2, (w - w0) // 2
            x = np.pad(x, ((0, 0), (top, h - h0 - top), (left, w - w0 - left), (0, 0)))
        else:
            import jax  # noqa: PLC0415
            x = np.asarray(jax.image.resize(x, (n, h, w, c0), "linear"))
    if c != c0:
        if c0 != 1:
            raise ValueError(f"cannot adapt {c0}-channel images to {c} channels")
        x = np.repeat(x, c, axis=-1)
    return x.astype(np.float32)
