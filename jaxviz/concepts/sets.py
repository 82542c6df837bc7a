"""Concept sets: named groups of example images, from arrays, an image folder or a generator.

    {"striped": x1, "dotted": x2}    arrays (N, H, W, C) (uint8 or float) per concept
    "folder:PATH"                    one subfolder per concept (sorted names), PNG/JPEG files
                                     read by jaxviz.user_data's rules (converted to the
                                     model's channels, resized to its (H, W))
    fn(key, n) -> array or dict      a generator: n images of one concept, or a dict of them

Every set comes back as float32 images in the model's input range (uint8 v mapped to
lo + (hi - lo) v / 255, as the data loaders do); float arrays must already lie in it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np

from jaxviz import user_data
from jaxviz.core import checks


def load_concepts(source, input_shape, input_range=(0.0, 1.0), *, key=None,
                  n: int | None = None, name: str = "concepts") -> dict[str, np.ndarray]:
    """A concept source (module docstring) -> {concept name: (N, H, W, C) float32 images}.

    Args:
      source: a mapping {name: images}, "folder:PATH", or a generator fn(key, n).
      input_shape: the model's (H, W, C).
      input_range: the model's declared (lo, hi), or None (uint8 then maps onto (0, 1) and
        float images are not range-checked).
      key, n: the PRNG key and image count a generator is called with (required for one).
      name: how errors name the argument.
    """
    if isinstance(source, str):
        kind, _, path = source.partition(":")
        if kind != "folder" or not path:
            raise ValueError(f"{name}: a string source must be 'folder:PATH' (one subfolder "
                             f"per concept); got {source!r}")
        return _from_folder(Path(path).expanduser(), input_shape, input_range)
    if callable(source) and not isinstance(source, Mapping):
        if key is None or n is None:
            raise ValueError(f"{name}: a generator is called as fn(key, n); pass key= and n=")
        out = source(key, int(n))
        source = out if isinstance(out, Mapping) else {getattr(source, "__name__", "concept"):
                                                       out}
    if not isinstance(source, Mapping) or not source:
        raise ValueError(f"{name}: expected a non-empty {{name: images}} mapping, "
                         f"'folder:PATH' or a generator fn(key, n); got {type(source).__name__}")
    return {str(k): as_images(v, input_shape, input_range, f"{name}[{k!r}]")
            for k, v in source.items()}


def as_images(x, input_shape, input_range, where: str) -> np.ndarray:
    """(N, H, W, C) uint8 or float -> float32 in input_range (None: not checked)."""
    x = np.asarray(jax.device_get(x))
    if x.ndim == 3 and tuple(input_shape)[-1] == 1:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{where}: expected images (N, {', '.join(map(str, input_shape))}); "
                         f"got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"{where}: a concept needs at least 2 images (some are held out); "
                         f"got {len(x)}")
    if x.dtype == np.uint8:
        return user_data.to_range(x, (0.0, 1.0) if input_range is None else input_range)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: images must be uint8 or float; got dtype {x.dtype}")
    x = x.astype(np.float32)
    if input_range is not None:
        checks.check_range(x, input_range, where)
    return x


def _from_folder(root: Path, input_shape, input_range) -> dict[str, np.ndarray]:
    out = {}
    for folder in user_data.class_folders(root):
        files = user_data.image_files(folder)
        x = np.stack([user_data.read_image(f, input_shape) for f in files])
        out[folder.name] = as_images(x, input_shape, input_range, str(folder))
    return out


def random_pool(x, n: int, key) -> np.ndarray:
    """n images drawn without replacement from x (N, H, W, C): the counterexample pool."""
    x = np.asarray(x)
    if n > len(x):
        raise ValueError(f"random pool: asked for {n} images from a set of {len(x)}")
    return x[np.asarray(jax.random.permutation(key, len(x))[:n])]


Generator = Callable[[jax.Array, int], np.ndarray]
