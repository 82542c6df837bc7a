"""Training: one jitted train step, a jitted eval step, a fit loop with Orbax checkpoints.

Everything is a pure function of (params, opt_state, batch, key); the only randomness is one
seed, from which the batch order (per epoch), augmentation and dropout keys (per step) are
derived, so a run resumed after epoch k ends with the same parameters as one never stopped.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from jaxviz.core import compile as compile_lib
from jaxviz import io



@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; README reports the validation accuracy the defaults reach."""

    model: str = "mnist_cnn"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 3e-3  # peak of a warmup + cosine schedule
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0
    shift: int = 2  # random translation of up to this many pixels (augmentation)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0; got {self.shift}")


def make_model(config: TrainConfig) -> nnx.Module:
    """The model named by config.model ("mnist_cnn" or "package.module:factory")."""
    from jaxviz.registry import build  # noqa: PLC0415

    return build(config.model, config.seed).model


@functools.lru_cache(maxsize=16)  # the same object for the same config: the jitted step is reused
def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    total = max(config.epochs * steps_per_epoch, 2)
    warmup = min(max(int(config.warmup_epochs * steps_per_epoch), 1), total - 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total)
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def random_shift(images: jax.Array, key: jax.Array, shift: int) -> jax.Array:
    """Translate each image by up to `shift` pixels (zero fill). images: (N, H, W, C)."""
    if shift == 0:
        return images
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * shift + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(padded, offsets)


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Trainable(NamedTuple):
    """An NNX model split for pure training. forward(params, x, key|None) -> logits."""

    graphdef: Any
    rest: Any  # non-trainable state (batch stats, rng counters)


def split_model(model: nnx.Module) -> tuple[Trainable, Any]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return Trainable(graphdef, rest), params


def forward(trainable: Trainable, params, x, key=None):
    """Train mode with a dropout key; inference mode (eval()) without one."""
    model = nnx.merge(trainable.graphdef, params, trainable.rest)
    if key is None:
        model.eval()
        return model(x)
    if _accepts(type(model).__call__, "dropout_key"):
        return model(x, dropout_key=key)
    if _accepts(type(model).__call__, "rngs"):
        return model(x, rngs=nnx.Rngs(dropout=key))
    return model(x)


def train_logits(trainable: Trainable, params, x, key):
    """forward() in train mode, through the compile policy's fast model (same gradients)."""
    return compile_lib.fast_model(lambda p, x, k: forward(trainable, p, x, k))(params, x, key)


def train_step(graphdef, optimizer, shift, params, rest, opt_state, x, y, key):
    """One Adam step on softmax cross-entropy. x: (B, H, W, C) float32, y: (B,) int32."""
    aug_key, drop_key = jax.random.split(key)
    x = random_shift(x, aug_key, shift)

    def loss_fn(p):
        logits = train_logits(Trainable(graphdef, rest), p, x, drop_key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == y)

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc


def eval_step(graphdef, params, rest, x, y):
    """Summed loss and correct count over a batch, inference mode."""
    logits = forward(Trainable(graphdef, rest), params, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, jnp.sum(jnp.argmax(logits, -1) == y)


_train_step = compile_lib.jit(train_step, kind="backward", static_argnums=(0, 1, 2),
                              donate_argnums=(3, 5))
_eval_step = compile_lib.jit(eval_step, kind="forward", static_argnums=(0,))
# The compiled steps fit() runs, public for callers that drive their own loop (the benchmark).
jitted_train_step, jitted_eval_step = _train_step, _eval_step


def evaluate(trainable, params, x, y, chunk_size: int = 500) -> tuple[float, float]:
    """(mean loss, accuracy) over all of x: (N, H, W, C), y: (N,), chunk_size images at once."""
    loss, correct = 0.0, 0
    for i in range(0, len(x), chunk_size):
        l, c = _eval_step(trainable.graphdef, params, trainable.rest, jnp.asarray(x[i:i + chunk_size]),
                          jnp.asarray(y[i:i + chunk_size]))
        loss, correct = loss + float(l), correct + int(c)
    return loss / len(x), correct / len(x)


class FitResult(NamedTuple):
    model: nnx.Module  # trained, merged back; call .eval() before inference
    params: Any
    metrics: list
    resumed_from: int | None


def fit(config: TrainConfig, data, run_dir: str | os.PathLike | None = None, *,
        resume: bool = False, quiet: bool = False, model: nnx.Module | None = None,
        log=None) -> FitResult:
    """Train on data.x_train/y_train, evaluate on data.x_val/y_val after every epoch.

    With run_dir: config.json, metrics.jsonl and an Orbax checkpoint per epoch
    (run_dir/checkpoints/<epoch>). resume=True continues from the latest checkpoint.
    """
    config.validate()
    model = model if model is not None else make_model(config)
    trainable, params = split_model(model)
    n = len(data.x_train)
    steps_per_epoch = max(1, n // config.batch_size)
    optimizer = make_optimizer(config, steps_per_epoch)
    opt_state = optimizer.init(params)
    base_key = jax.random.key(config.seed)
    start_epoch, metrics, resumed_from = 0, [], None
    store = None
    if run_dir is not None:
        store = CheckpointStore(run_dir)
        store.open(config, resume)
        if resume and store.latest() is not None:
            resumed_from = store.latest()
            params, opt_state = store.restore(resumed_from, params, opt_state)
            start_epoch = resumed_from
            metrics = [m for m in store.read_metrics() if m["epoch"] <= start_epoch]

    x_train, y_train = np.asarray(data.x_train), np.asarray(data.y_train)
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", quiet)
        losses, accs = [], []
        for s in range(steps_per_epoch):
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            step = epoch * steps_per_epoch + s
            params, opt_state, loss, acc = _train_step(
                trainable.graphdef, optimizer, config.shift, params, trainable.rest, opt_state,
                jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]),
                jax.random.fold_in(base_key, step))
            losses.append(loss)
            accs.append(acc)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        losses = np.asarray(jax.device_get(losses))
        if not np.all(np.isfinite(losses)):
            bad = epoch * steps_per_epoch + int(np.flatnonzero(~np.isfinite(losses))[0])
            kept = f"; the last good checkpoint (epoch {epoch}) is kept" if store and epoch else ""
            raise FloatingPointError(f"training loss became NaN/inf at step {bad} "
                                     f"(epoch {epoch + 1}){kept}")
        val_loss, val_acc = evaluate(trainable, params, data.x_val, data.y_val)
        record = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
                  "train_loss": float(losses.mean()),
                  "train_accuracy": float(np.mean(jax.device_get(accs))),
                  "val_loss": val_loss, "val_accuracy": val_acc,
                  "seconds": time.perf_counter() - t0}
        metrics.append(record)
        if store is not None:
            store.save(epoch + 1, params, opt_state, base_key, metrics)
        if log is not None:
            log(record)
    final = nnx.merge(trainable.graphdef, params, trainable.rest)
    final.eval()
    return FitResult(final, params, metrics, resumed_from)


def _progress(total: int, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # noqa: PLC0415
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


class CheckpointStore:
    """run_dir/config.json, run_dir/metrics.jsonl, run_dir/checkpoints/<epoch> (Orbax)."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"

    def open(self, config: TrainConfig, resume: bool) -> None:
        """Make run_dir writable and consistent with `config`: check a resumed run's config,
        clear a stale run's checkpoints, drop partial saves, write config.json."""
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PermissionError(f"run directory {str(self.run_dir)!r} is not writable: {err}") from err
        if not os.access(self.run_dir, os.W_OK):
            raise PermissionError(f"run directory {str(self.run_dir)!r} is not writable")
        self.clean_partial()
        saved = self.read_config()
        if resume and saved is not None:
            ours, theirs = config.to_dict(), dict(saved)
            diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
            if diff:
                raise ValueError(f"--resume: the checkpoint in {self.run_dir} was made with a "
                                 f"different config (field: (checkpoint, requested)): {diff}")
        elif not resume and self.latest() is not None:
            shutil.rmtree(self.ckpt_dir)  # a fresh run replaces an old one, never mixes with it
            self.ckpt_dir.mkdir()
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        io.write_text(self.run_dir / "config.json", json.dumps(config.to_dict(), indent=2))

    def clean_partial(self) -> None:
        """Drop what a killed save left: Orbax's temporary directories and our .tmp files."""
        for p in self.ckpt_dir.iterdir():
            if not p.name.isdigit():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def read_config(self) -> dict | None:
        path = self.run_dir / "config.json"
        return json.loads(path.read_text()) if path.exists() else None

    def read_metrics(self) -> list[dict]:
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _manager(self):
        return ocp.CheckpointManager(self.ckpt_dir.resolve(), options=ocp.CheckpointManagerOptions(
            max_to_keep=2, enable_async_checkpointing=False, create=True))

    def latest(self) -> int | None:
        steps = [int(p.name) for p in self.ckpt_dir.iterdir() if p.name.isdigit()] \
            if self.ckpt_dir.exists() else []
        return max(steps) if steps else None

    def save(self, epoch: int, params, opt_state, key, metrics) -> None:
        tree = {"params": nnx.to_pure_dict(params), "opt_state": opt_state,
                "key": jax.random.key_data(key)}
        with self._manager() as mngr:
            mngr.save(epoch, args=ocp.args.StandardSave(tree))
            mngr.wait_until_finished()
        io.write_text(self.run_dir / "metrics.jsonl",
                      "".join(json.dumps(m) + "\n" for m in metrics))

    def restore(self, epoch: int, params, opt_state):
        """Restore into the structure of (params, opt_state); a mismatch names the first
        differing parameter instead of loading something else."""
        expected = {"params": nnx.to_pure_dict(params), "opt_state": opt_state,
                    "key": jax.random.key_data(jax.random.key(0))}
        with self._manager() as mngr:
            raw = mngr.restore(epoch, args=ocp.args.StandardRestore())
            check_same_structure(expected["params"], raw["params"],
                                 f"checkpoint {self.ckpt_dir / str(epoch)}")
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, expected)
            tree = mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
        nnx.replace_by_pure_dict(params, tree["params"])
        return params, tree["opt_state"]


def check_same_structure(expected: dict, saved, where: str) -> None:
    """Raise ValueError naming the first parameter whose presence, shape or dtype differs."""
    flat_e = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    flat_s = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(saved)[0]}
    for name in sorted(set(flat_e) | set(flat_s)):
        e, s = flat_e.get(name), flat_s.get(name)
        if e is None or s is None:
            raise ValueError(f"{where} does not fit this model: parameter {name} is "
                             f"{'missing from the checkpoint' if s is None else 'not in the model'}")
        if tuple(e.shape) != tuple(s.shape) or np.dtype(e.dtype) != np.dtype(s.dtype):
            raise ValueError(f"{where} does not fit this model: parameter {name} is "
                             f"{tuple(s.shape)} {np.dtype(s.dtype)} in the checkpoint, "
                             f"{tuple(e.shape)} {np.dtype(e.dtype)} in the model")


def load_trained(run_dir, model: nnx.Module | None = None) -> tuple[nnx.Module, TrainConfig]:
    """The model from run_dir's latest checkpoint, in inference mode. Raises if there is none."""
    store = CheckpointStore(run_dir)
    saved = store.read_config() if Path(run_dir).exists() else None
    if saved is None or not store.ckpt_dir.exists() or store.latest() is None:
        raise FileNotFoundError(f"no checkpoint in {str(run_dir)!r} (expected config.json and "
                                f"checkpoints/<epoch>); train first: jaxviz train --out {run_dir}")
    config = TrainConfig.from_dict(saved)
    model = model if model is not None else make_model(config)
    trainable, params = split_model(model)
    n_steps = 1  # the optimizer state's structure does not depend on the schedule length
    opt_state = make_optimizer(config, n_steps).init(params)
    params, _ = store.restore(store.latest(), params, opt_state)
    final = nnx.merge(trainable.graphdef, params, trainable.rest)
    final.eval()
    return final, config

