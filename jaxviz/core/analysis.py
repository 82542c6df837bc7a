"""What every analysis shares: checked inputs, the one target score, the input gradient,
chunked evaluation and per-image PRNG keys.

The chunk knob has one name everywhere: `chunk_size`, how many forward (or forward +
backward) passes run at once. A number bounds memory at that many, through
`jax.lax.map(..., batch_size=chunk_size)`. None (the default where a method has no fixed
chunk) evaluates all of them in one vmapped call when they fit in CHUNK_MEMORY, else the
largest chunk that does (`default_chunk`): a small model's passes always run at once, a
224x224 ResNet's run a few at a time instead of asking for more memory than the machine
has (docs/realistic.md has the measurements).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import checks
from jaxviz.core import probe as probe_lib

SCORES = ("logit", "prob", "log_prob")


def num_classes(fn, params, x_shape) -> int:
    """K of fn's (N, K) logits for inputs shaped x_shape (by tracing, no compute)."""
    if isinstance(fn, probe_lib.Probe):
        shape = fn.output_shape(x_shape)
    else:
        shape = jax.eval_shape(fn, params, jax.ShapeDtypeStruct(x_shape, jnp.float32)).shape
    if len(shape) != 2 or shape[0] != x_shape[0]:
        raise ValueError(f"fn must return (N, K) logits for images of shape {x_shape}; "
                         f"got output shape {tuple(shape)}")
    return int(shape[1])


def check_inputs(fn, params, images, target, name: str = "images"):
    """Validated (N, H, W, C) float32 images and (N,) int32 targets, range-checked
    (`check_images`; class targets by `checks.as_targets`)."""
    x = check_images(fn, params, images, name)
    return x, checks.as_targets(target, x.shape[0], _declared_classes(
        fn, params, x.shape, getattr(fn, "input_shape", None)
        if isinstance(fn, probe_lib.Probe) else None, name))


def check_images(fn, params, images, name: str = "images"):
    """Validated (N, H, W, C) float32 images for `fn`.

    For a Probe, against its spec as strictly as the data loaders: params with its parameter
    structure (`checks.check_params`), float images inside a declared input_range and uint8
    mapped onto it (`checks.check_range`; skipped for traced images, so a method's inner
    calls on noisy copies under jit/vmap are not refused), and the declared (H, W, C): a
    batch of another shape is refused unless the model itself takes it (a fully
    convolutional net)."""
    if not callable(fn):
        raise ValueError(f"fn must be a callable fn(params, x) -> logits or a Probe; got "
                         f"{type(fn).__name__}")
    probe = fn if isinstance(fn, probe_lib.Probe) else None
    spec = None if probe is None else probe.input_shape
    if probe is not None:
        checks.check_params(params, probe.params)
    declared = probe.input_range if probe is not None and probe.range_declared else None
    x = checks.as_images(images, name, input_shape=spec, input_range=declared)
    if spec is None and not checks.is_traced(images):
        _refuse_channel_first(fn, params, x.shape, name)
    return x


def _declared_classes(fn, params, x_shape, spec, name: str) -> int:
    """num_classes for x_shape; a model that cannot take a batch other than its declared
    (H, W, C) gets an error naming both shapes, not the framework's shape error."""
    return _fitting(num_classes, fn, params, x_shape, spec, name)


def output_shape(fn, params, x_shape, name: str = "images") -> tuple:
    """fn's output shape for inputs x_shape (by tracing), with `check_inputs`' error for a
    batch the model cannot take."""
    def shape(fn, params, x_shape):
        if isinstance(fn, probe_lib.Probe):
            return tuple(fn.output_shape(tuple(x_shape)))
        out = jax.eval_shape(fn, params, jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32))
        if not hasattr(out, "shape"):
            raise ValueError(f"fn must return one array (the model's output); got "
                             f"{type(out).__name__}")
        return tuple(out.shape)
    spec = fn.input_shape if isinstance(fn, probe_lib.Probe) else None
    return _fitting(shape, fn, params, x_shape, spec, name)


def _fitting(f, fn, params, x_shape, spec, name: str):
    if spec is None or tuple(x_shape[1:]) == tuple(spec):
        return f(fn, params, x_shape)
    try:
        return f(fn, params, x_shape)
    except Exception as err:  # noqa: BLE001 -- any failure to trace: the shape does not fit
        raise ValueError(f"{name} must be (N, {', '.join(map(str, spec))}), the model's "
                         f"declared input_shape; got shape {tuple(x_shape)} (the model fails "
                         f"on it: {type(err).__name__})") from err


def _refuse_channel_first(fn, params, shape, name: str) -> None:
    """Without a declared input shape, ask the model: a batch it cannot take whose
    channels-last transpose it can take is channel-first (checked by tracing only)."""
    if checks.channel_layout(shape) != "unknown" or shape[1] not in checks.IMAGE_CHANNELS:
        return

    def fits(s):
        try:
            num_classes(fn, params, s)
            return True
        except Exception:  # noqa: BLE001 -- any failure to trace means "does not fit"
            return False
    if not fits(shape) and fits((shape[0], shape[2], shape[3], shape[1])):
        raise checks.channel_first_error(name, shape)


def target_score(logits: jax.Array, target: jax.Array, score: str = "logit") -> jax.Array:
    """The score each analysis explains. logits: (..., K), target: (...) int -> (...).

    score: "logit" (the default everywhere), "prob" (softmax) or "log_prob"."""
    logits = logits.astype(jnp.float32)  # a bfloat16 model's scores are float32 too
    if score == "prob":
        logits = jax.nn.softmax(logits, axis=-1)
    elif score == "log_prob":
        logits = jax.nn.log_softmax(logits, axis=-1)
    elif score != "logit":
        raise ValueError(f"score must be one of {SCORES}; got {score!r}")
    return jnp.take_along_axis(logits, target[..., None], axis=-1)[..., 0]


def input_grad(model, params, x: jax.Array, t: jax.Array) -> jax.Array:
    """d score[i] / d x[i] for every image at once. x: (N, H, W, C) -> (N, H, W, C).

    `model` is called as given: wrap it with `compile.fast_model` (the compile policy) or a
    rule rewrite before passing it in. Images must not interact inside `model`."""
    def total(x):
        return target_score(model(params, x), t).sum()
    return jax.grad(total)(x)


def chunked(f, xs, chunk_size: int | None):
    """vmap f over xs' leading axis, chunk_size rows at a time (None: all at once)."""
    if chunk_size is None or chunk_size >= jax.tree.leaves(xs)[0].shape[0]:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=chunk_size)


def check_chunk_size(chunk_size, name: str = "chunk_size") -> int | None:
    """None, or an int >= 1."""
    return None if chunk_size is None else checks.positive_int(chunk_size, name)


# Bytes of intermediate values one chunk of passes may hold: a sixth of a 24 GiB machine,
# so two test workers, the OS and XLA's own overhead still fit beside it.
CHUNK_MEMORY = 4 * 2**30


def pass_bytes(fn, params, x_shape) -> int:
    """Bytes of every intermediate value of one forward pass fn(params, x), x: x_shape
    float32, summed (no buffer reuse): an upper bound on a forward pass's memory and about
    what a backward pass keeps. By tracing only; cached per model structure and shape."""
    return _pass_bytes(static_fn(fn), _abstract(params), tuple(x_shape))


def _abstract(params):
    leaves, tree = jax.tree.flatten(params)
    return tree, tuple((tuple(jnp.shape(a)), jnp.result_type(a)) for a in leaves)


@functools.lru_cache(maxsize=64)
def _pass_bytes(fn, params_spec, x_shape) -> int:
    from jaxviz.core import interpret  # noqa: PLC0415 (interpret imports this module's peers)
    tree, specs = params_spec
    params = jax.tree.unflatten(tree, [jax.ShapeDtypeStruct(s, d) for s, d in specs])
    closed = jax.make_jaxpr(fn)(params, jax.ShapeDtypeStruct(x_shape, jnp.float32))
    return int(sum(int(np.prod(v.aval.shape)) * v.aval.dtype.itemsize
                   for e in interpret.leaf_eqns(closed) for v in e.outvars
                   if hasattr(v.aval, "shape")))


def default_chunk(chunk_size, fn, params, x_shape, n_passes: int, weight: int = 1
                  ) -> int | None:
    """chunk_size checked; for None, None (all n_passes at once) when n_passes passes of
    fn on x_shape fit in CHUNK_MEMORY (by `pass_bytes`), else the most even chunks that
    do (at least 1 pass each; even, so that padding the last chunk wastes little).
    weight: passes' worth of memory each one holds (T targets' backward passes: T)."""
    if chunk_size is not None:
        return check_chunk_size(chunk_size)
    fit = max(1, CHUNK_MEMORY // max(pass_bytes(fn, params, x_shape) * weight, 1))
    if fit >= n_passes:
        return None
    return int(-(-n_passes // -(-n_passes // fit)))  # ceil(n / number of chunks)


def image_keys(key, n: int, name: str = "key") -> jax.Array:
    """One PRNG key, split into n, or n keys given (one per image) -> (n,) keys."""
    if key is None:
        raise ValueError(f"{name} is required: a jax.random.key(seed), or one key per image")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not typed and not (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
        raise ValueError(f"{name} must be a PRNG key (jax.random.key); got dtype {key.dtype}")
    kshape = key.shape if typed else key.shape[:-1]
    if kshape == ():
        return jax.random.split(key, n)
    if kshape == (n,):
        return key
    raise ValueError(f"{name} must be one key or one per image, shape ({n},); got key shape "
                     f"{kshape}")


def static_fn(fn):
    """The form of fn passed to a jitted core as a static argument: for a Probe, a view
    without arrays (so a compiled cache never keeps weights alive); otherwise fn."""
    view = getattr(probe_lib, "static_view", None)
    return view(fn) if view is not None else fn
