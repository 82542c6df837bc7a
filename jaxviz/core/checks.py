"""Input validation shared by every analysis: plain-words errors before any tracing.

The rules, the same everywhere:
- images are batch-first, channels-last (N, H, W, C); (H, W), (H, W, C) and channel-first
  (N, C, H, W) are refused, never transposed by guessing. Channel-first is decided by the
  model's declared input shape (H, W, C) when known (`channel_layout`); without one, only a
  square (N, c, s, s) batch with c in {1, 3, 4} and s > 4 is refused by shape alone, and
  `jaxviz.core.analysis` asks the model itself (it accepts only the transposed shape);
- uint8 images are converted by one rule, lo + (hi - lo) * x / 255 -> float32 in the model's
  declared input range (lo, hi), [0, 1] when none is declared (the loaders' rule); other
  floats (float64 included, which JAX keeps as float32 without x64) become float32;
  anything else is refused;
- NaN or inf pixels are refused, naming how many and the first one;
- against a declared input range, float pixels beyond it by more than RANGE_TOLERANCE of
  its width are refused (`check_range`, the one rule the data loaders apply too): 0..255
  floats into a (0, 1) model give a wrong answer, not an error, once inside the model;
- params of a Probe must have its parameter structure and shapes (`check_params`);
- targets may be an int (same class for every image), a list or an array of N ints, and
  must lie in [0, num_classes): JAX would silently clamp an out-of-range index.
Checks that need concrete values are skipped for traced arrays (inside a user's jit).
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp


def is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


IMAGE_CHANNELS = (1, 3, 4)


def channel_first_error(name: str, shape) -> ValueError:
    return ValueError(f"{name} looks channel-first {tuple(shape)}; jaxviz expects channels last "
                      f"(N, H, W, C): pass x.transpose(0, 2, 3, 1)")


def channel_layout(shape, input_shape=None) -> str:
    """"nhwc", "nchw" (refuse) or "unknown" for a 4-D batch shape.

    With the model's input_shape (H, W, C): exactly (H, W, C) is NHWC; (C, H, W), or C in
    axis 1 but not in the last, is channel-first; C in the last axis is NHWC (another size);
    else unknown (the model decides). Without it, only the unambiguous-looking case is
    channel-first: a square (N, c, s, s), c in {1, 3, 4}, s > 4 (as NHWC it would be an
    image c pixels tall with s == W channels)."""
    _, a, b, c = shape
    if input_shape is not None:
        h0, w0, c0 = input_shape
        if (a, b, c) == (h0, w0, c0):
            return "nhwc"
        if (a, b, c) == (c0, h0, w0) or (a == c0 and c != c0):
            return "nchw"
        return "nhwc" if c == c0 else "unknown"
    if a in IMAGE_CHANNELS and b == c > 4:
        return "nchw"
    return "unknown"


def as_images(x, name: str = "images", *, expect_hw: tuple[int, int] | None = None,
              expect_c: int | None = None, input_shape=None, input_range=None) -> jax.Array:
    """Validate and convert a batch of images. Returns (N, H, W, C) float32.
    input_shape: the model's declared (H, W, C), when known (decides the layout).
    input_range: the model's declared (lo, hi), when known: uint8 maps onto it, floats must
    lie inside it (`check_range`; skipped for traced images)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be a batch shaped (N, H, W, C), channels last (one image is a batch "
            f"of one: x[None]); got shape {tuple(x.shape)}")
    n, h, w, c = x.shape
    if channel_layout(x.shape, input_shape) == "nchw":
        raise channel_first_error(name, x.shape)
    if expect_c is not None and c != expect_c:
        raise ValueError(f"{name} must have {expect_c} channel(s) in the last axis "
                         f"(N, H, W, C); got shape {tuple(x.shape)}")
    if expect_hw is not None and (h, w) != tuple(expect_hw):
        raise ValueError(f"{name} must be (N, {expect_hw[0]}, {expect_hw[1]}, C); "
                         f"got shape {tuple(x.shape)}")
    is_float = x.dtype != np.uint8
    if not is_float:
        lo, hi = (0.0, 1.0) if input_range is None else input_range
        x = lo + (hi - lo) * (jnp.asarray(x, jnp.float32) / 255.0)
    elif jnp.issubdtype(x.dtype, jnp.floating):
        x = jnp.asarray(x, jnp.float32)
    else:
        raise ValueError(f"{name} must be float (any range) or uint8 (0-255, divided by 255); "
                         f"got dtype {x.dtype}")
    if not is_traced(x):
        host = np.asarray(x)
        bad = ~np.isfinite(host)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf value(s), the first at "
                             f"index {first} (n, y, x, c)")
        if is_float and input_range is not None:
            check_range(host, input_range, name)
    return x


# Pixels may exceed a declared range by this fraction of its width (float rounding of a
# rescale), never by a wrong scale (0..255 for 0..1) or offset ([-1, 1] for [0, 1]).
RANGE_TOLERANCE = 1e-3


def check_range(x, input_range, name: str = "images") -> None:
    """Refuse values of x (any shape) outside input_range (lo, hi) by more than
    RANGE_TOLERANCE * (hi - lo), naming the range and x's min/max. One min and one max
    reduction; skipped for traced x. The data loaders and the Python API share it."""
    if is_traced(x) or not np.size(x):
        return
    lo, hi = (float(v) for v in input_range)
    tol = RANGE_TOLERANCE * (hi - lo)
    mn, mx = float(np.min(x)), float(np.max(x))
    if mn < lo - tol or mx > hi + tol:
        raise ValueError(f"{name} spans [{mn:.4g}, {mx:.4g}], outside the model's input range "
                         f"[{lo:g}, {hi:g}]; pass uint8 pixels (mapped onto that range) or "
                         f"floats inside it")


def _leaf_shapes(tree) -> dict[str, tuple]:
    """{path: shape} of a parameter tree; an nnx.State's `.value` steps are dropped, so a
    State and its pure dict (`nnx.to_pure_dict`) have the same paths."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [k for k in path if not (isinstance(k, jax.tree_util.GetAttrKey)
                                        and k.name == "value")]
        out[jax.tree_util.keystr(tuple(keys))] = tuple(jnp.shape(leaf))
    return out


def check_params(params, expected, name: str = "params") -> None:
    """params must be a tree with the same leaves (by path) and shapes as `expected`, the
    Probe's own params (dtypes may differ). Shapes only: traced params pass the same way."""
    if params is None:
        raise ValueError(f"{name} is None; pass the model's weights, e.g. probe.params (a tree "
                         f"of {len(jax.tree.leaves(expected))} arrays)")
    if (jax.tree.structure(params) == jax.tree.structure(expected)
            and all(jnp.shape(a) == jnp.shape(b)
                    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)))):
        return  # the usual case, without building paths
    got, want = _leaf_shapes(params), _leaf_shapes(expected)
    if got == want:
        return
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shapes = [f"{k}: expected {want[k]}, got {got[k]}" for k in want
              if k in got and got[k] != want[k]]
    parts = ([f"missing {missing[:3]}"] if missing else []) + (
        [f"unexpected {extra[:3]}"] if extra else []) + shapes[:3]
    raise ValueError(f"{name} do not match the model's parameters (probe.params: "
                     f"{len(want)} arrays; got {type(params).__name__} with {len(got)}): "
                     f"{'; '.join(parts)}")


def as_targets(target, n: int, num_classes: int | None, name: str = "target") -> jax.Array:
    """An int, list or array of class indices -> (N,) int32, range-checked."""
    if target is None:
        raise ValueError(f"{name} is required: the class index to explain, an int or one per image")
    if is_traced(target):
        t = jnp.asarray(target, jnp.int32)
        return jnp.broadcast_to(t, (n,)) if t.ndim == 0 else t
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices; got dtype {t.dtype}")
    if t.ndim == 0:
        t = np.full((n,), int(t))
    if t.shape != (n,):
        raise ValueError(f"{name} must be an int or have one entry per image, shape ({n},); "
                         f"got shape {t.shape}")
    if num_classes is not None and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}); got values "
                         f"{sorted(set(t[(t < 0) | (t >= num_classes)].tolist()))}")
    return jnp.asarray(t, jnp.int32)


def positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum -> (a, b)."""
    vals = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be an int or a pair (h, w); got {value!r}")
    return tuple(positive_int(v, name, minimum) for v in vals)


def warn_outside_range(fill, images, name: str = "baseline", input_range=None) -> None:
    """Warn when a baseline/fill value lies outside the inputs' range: the model never saw
    such values, so scores against it measure an artefact. The range is `input_range` when
    given, else the images' own min..max widened to include 0 (zero, the usual "absent"
    baseline, is never flagged). Skipped for traced values."""
    import warnings  # noqa: PLC0415

    if is_traced(fill) or is_traced(images):
        return
    f = np.asarray(fill, np.float32)
    if input_range is None:
        lo, hi = min(float(np.min(images)), 0.0), max(float(np.max(images)), 0.0)
    else:
        lo, hi = input_range
    if f.size and (float(f.min()) < lo - 1e-6 or float(f.max()) > hi + 1e-6):
        warnings.warn(f"{name} spans [{float(f.min()):.3g}, {float(f.max()):.3g}], outside the "
                      f"input range [{lo:.3g}, {hi:.3g}]; attributions against it measure "
                      f"inputs the model never saw", RuntimeWarning, stacklevel=3)
