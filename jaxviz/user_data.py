"""The user's own images: an .npz file or an image-folder tree, fitted to a model's input spec.

    npz:PATH      x (N, H, W, C) or (N, H, W) uint8 or float, y (N,) ints or (N, K) one-hot
    folder:PATH   one subfolder per class (sorted names -> 0, 1, ...), PNG or JPEG files,
                  the layout torchvision's ImageFolder reads

The rules (stated once, applied to both):
- uint8 pixels v become v / 255, mapped linearly onto the model's input range (lo, hi):
  lo + (hi - lo) * v / 255. Float pixels in an .npz are used as they are and must already
  lie inside the model's input range.
- An .npz must match the model's (H, W, C) exactly: nothing is resized or guessed.
- Folder images are converted by Pillow to the model's channels (1: "L" gray, 3: "RGB",
  4: "RGBA") and resized to the model's (H, W) with bilinear filtering; the aspect ratio
  is not kept (crop beforehand if it matters).
- Validation: a stratified split, VAL_FRACTION of each class (at least one image),
  seeded by SPLIT_SEED: the same split for `jaxviz train` and every later command.
Every error names the file (or folder) and what was expected.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from jaxviz.core import checks
from jaxviz.data import Dataset

VAL_FRACTION = 0.2
SPLIT_SEED = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def stratified_fraction_split(labels: np.ndarray, fraction: float = VAL_FRACTION,
                              seed: int = SPLIT_SEED, where: str = "data"):
    """(train indices, validation indices), both sorted: round(fraction * n_c) of each
    class c (at least one) held out. A class with fewer than 2 examples is refused."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1); got {fraction!r}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise ValueError(f"{where}: class {int(c)} has {len(idx)} example(s); at least 2 "
                             f"are needed to hold one out for validation")
        n_val = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        val.append(rng.permutation(idx)[:n_val])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val), val


def to_range(x_u8: np.ndarray, input_range=(0.0, 1.0)) -> np.ndarray:
    """uint8 pixels -> float32 in input_range: lo + (hi - lo) * v / 255."""
    lo, hi = input_range
    return (lo + (hi - lo) * (x_u8.astype(np.float32) / 255.0)).astype(np.float32)


def _labels(y: np.ndarray, n: int, where: str, num_classes: int | None) -> np.ndarray:
    if y.ndim == 2:  # one-hot, as the seed's val_y
        y = y.argmax(axis=1)
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))
    if y.ndim != 1 or not integral or y.size == 0:
        raise ValueError(f"{where}: y must be (N,) integer class indices or (N, K) one-hot; "
                         f"got shape {y.shape} dtype {y.dtype}")
    if len(y) != n:
        raise ValueError(f"{where}: x holds {n} images but y holds {len(y)} labels")
    y = y.astype(np.int64)
    k = num_classes
    if y.min() < 0 or (k is not None and y.max() >= k):
        bad = sorted(set(y[(y < 0) | ((y >= k) if k is not None else False)].tolist()))
        raise ValueError(f"{where}: labels must lie in [0, {k}) for this model; got {bad[:10]}")
    return y.astype(np.int32)


def _dataset(x, y, name: str, where: str, class_names=(), val_fraction=VAL_FRACTION) -> Dataset:
    train, val = stratified_fraction_split(y, val_fraction, where=where)
    return Dataset(x[train], y[train], x[val], y[val], name, tuple(class_names))


def load_npz(path, input_shape, input_range=(0.0, 1.0), num_classes=None,
             val_fraction=VAL_FRACTION) -> Dataset:
    """x and y from an .npz (see the module docstring) -> Dataset fitted to input_shape."""
    path = Path(path)
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"--data npz: file {where!r} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{where}: cannot read as .npz ({err})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ValueError(f"{where}: needs arrays 'x' (N, H, W, C) and 'y' (N,); missing "
                         f"{missing}, found {sorted(arrays)}")
    x = arrays["x"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{where}: x must be (N, {', '.join(map(str, input_shape))}) for this "
                         f"model's input shape (H, W, C); got {x.shape}")
    y = _labels(np.asarray(arrays["y"]), len(x), where, num_classes)
    return _dataset(_pixels(x, where, input_range), y, f"npz:{path.name}", where,
                    val_fraction=val_fraction)


def _pixels(x: np.ndarray, where: str, input_range) -> np.ndarray:
    if x.dtype == np.uint8:
        return to_range(x, input_range)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: x must be uint8 (0-255) or float; got dtype {x.dtype}")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{where}: x holds {int(bad.sum())} NaN/inf value(s), the first at "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    checks.check_range(x, input_range, f"{where}: float x")  # the Python API's rule too
    return x


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of an image-folder tree, sorted by name (hidden ones skipped)."""
    if not root.is_dir():
        raise FileNotFoundError(f"--data folder: {str(root)!r} is not a directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root}: no class subfolders; expected one folder per class, "
                         f"e.g. {root}/cat/*.png, {root}/dog/*.png")
    return folders


def image_files(folder: Path) -> list[Path]:
    """PNG/JPEG files under a class folder (any depth), sorted; none is an error."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder}: class folder holds no images "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: Path, input_shape) -> np.ndarray:
    """One file -> (H, W, C) uint8, converted and resized by the module's rule."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 (matplotlib's dependency)

    h, w, c = input_shape
    if c not in PIL_MODES:
        raise ValueError(f"image folders fit models with 1, 3 or 4 channels; this model takes {c}")
    try:
        with Image.open(path) as im:
            im = im.convert(PIL_MODES[c])
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read as an image ({err})") from None
    return arr.reshape(h, w, c)


def read_original(path: Path) -> np.ndarray:
    """One file as it is, for drawing: (H, W, 3) uint8 RGB at its own size."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 (matplotlib's dependency)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read as an image ({err})") from None


def load_folder(root, input_shape, input_range=(0.0, 1.0), num_classes=None,
                val_fraction=VAL_FRACTION) -> Dataset:
    """An image-folder tree (see the module docstring) -> Dataset fitted to input_shape."""
    root = Path(root)
    folders = class_folders(root)
    if num_classes is not None and len(folders) > num_classes:
        raise ValueError(f"{root}: {len(folders)} class folders but the model outputs "
                         f"{num_classes} classes")
    images, labels = [], []
    for label, folder in enumerate(folders):
        for f in image_files(folder):
            images.append(read_image(f, input_shape))
            labels.append(label)
    x = to_range(np.stack(images), input_range)
    return _dataset(x, np.asarray(labels, np.int32), f"folder:{root.name}", str(root),
                    [f.name for f in folders], val_fraction)


def is_user_source(source: str) -> bool:
    return source.startswith(("npz:", "folder:"))


def canonical(source: str) -> str:
    """'npz:rel/path' -> 'npz:/abs/path' (stored with a run, found from any directory)."""
    if not is_user_source(source):
        return source
    kind, _, path = source.partition(":")
    return f"{kind}:{Path(path).expanduser().resolve()}"


def load(source: str, input_shape, input_range=(0.0, 1.0), num_classes=None,
         val_fraction=VAL_FRACTION) -> Dataset:
    """'npz:PATH' or 'folder:PATH' -> Dataset fitted to the model's input spec, val_fraction
    of each class held out for validation."""
    kind, _, path = source.partition(":")
    if not path:
        raise ValueError(f"--data {source!r}: give a path, e.g. npz:images.npz or folder:images/")
    loader = {"npz": load_npz, "folder": load_folder}[kind]
    return loader(os.path.expanduser(path), input_shape, input_range, num_classes, val_fraction)
