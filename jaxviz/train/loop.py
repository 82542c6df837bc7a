"""The fit loop: epochs of compiled train steps, an evaluation and a checkpoint after each.

The only randomness is one seed, from which the batch order (per epoch), augmentation and
dropout keys (per step) are derived; a model's own RNG counters are part of its saved
state. So a run resumed after epoch k ends with the same parameters and state as one never
stopped. The BatchNorm recalibration after the last epoch keeps that: training-mode steps
never read the running statistics, and the recalibrated ones depend only on the weights
and the training images.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxviz.train import checks
from jaxviz.train.batchnorm import has_batchnorm, recalibrated_rest
from jaxviz.train.checkpoint import CheckpointStore
from jaxviz.train.config import TrainConfig, make_optimizer
from jaxviz.train.step import (Trainable, TrainState, evaluate, infer, jitted_train_step,
                               split_model)


def make_model(config: TrainConfig) -> nnx.Module:
    """The model named by config.model ("mnist_cnn" or "package.module:factory")."""
    from jaxviz.registry import build  # noqa: PLC0415

    return build(config.model, config.seed).model


def _check_trainable(model) -> None:
    """jaxviz trains what an adapter says it can (Flax); other libraries train their own."""
    from jaxviz.core import adapters  # noqa: PLC0415
    try:
        adapter = adapters.for_model(model)
    except TypeError as err:
        raise ValueError(f"fit: {err}") from None
    if adapter.to_trainable is None:
        raise ValueError(f"fit: jaxviz trains Flax models; train this {type(model).__name__} "
                         f"with {adapter.name}'s own tools (Keras: model.fit) and analyse the "
                         f"trained model, e.g. `jaxviz report --model model.keras`")


class FitResult(NamedTuple):
    model: nnx.Module  # trained, merged back with its state, in inference mode
    params: Any
    metrics: list
    resumed_from: int | None
    # BatchNorm recalibration after the last epoch (None: no BatchNorm, or nothing trained):
    # {"val_accuracy_before", "val_accuracy_after", "val_loss_before", "val_loss_after"}
    recalibration: dict | None = None


def fit(config: TrainConfig, data, run_dir: str | os.PathLike | None = None, *,
        resume: bool = False, overwrite: bool = False, recalibrate: bool = True,
        quiet: bool = False, model: nnx.Module | None = None, log=None) -> FitResult:
    """Train on data.x_train/y_train, evaluate on data.x_val/y_val after every epoch.

    With run_dir: config.json, metrics.jsonl and an Orbax checkpoint per epoch
    (run_dir/checkpoints/<epoch>). A run_dir that already holds a run is refused unless
    overwrite=True (which replaces it) or resume=True (which continues from its latest
    checkpoint, up to config.epochs: the epochs may grow, nothing else may change; the
    learning-rate schedule is then the new config's).

    recalibrate: after the last epoch, a model with BatchNorm gets its running statistics
    recomputed over the training images (`recalibrate_batchnorm`); the last checkpoint,
    the returned model and the last metrics record ("val_accuracy", plus
    "val_accuracy_before_recalibration") are the recalibrated model's. The batch and the
    data's classes are checked first (UserWarning: `checks`).
    """
    config.validate()
    model = model if model is not None else make_model(config)
    _check_trainable(model)
    trainable, params = split_model(model)
    steps = checks.steps_per_epoch(len(data.x_train), config.batch_size)
    optimizer = make_optimizer(config, steps)
    state = TrainState(params, trainable.rest, optimizer.init(params))
    store = None if run_dir is None else CheckpointStore(run_dir)
    state, metrics, resumed_from = _start(store, config, resume, overwrite, state)
    _warn_about_data(config, data, trainable, params)  # after the run directory's checks
    base_key = jax.random.key(config.seed)
    recal = None
    for epoch in range(resumed_from or 0, config.epochs):
        t0 = time.perf_counter()
        state, losses, accs = _train_epoch(config, trainable.graphdef, optimizer, state, data,
                                           epoch, steps, quiet)
        _check_finite(losses, epoch, steps, kept=store is not None and epoch > 0)
        val_loss, val_acc = evaluate(Trainable(trainable.graphdef, state.rest), state.params,
                                     data.x_val, data.y_val)
        record = {"epoch": epoch + 1, "step": (epoch + 1) * steps,
                  "train_loss": float(losses.mean()), "train_accuracy": float(accs.mean()),
                  "val_loss": val_loss, "val_accuracy": val_acc}
        if recalibrate and epoch + 1 == config.epochs:
            state, recal = _recalibrate(config, trainable.graphdef, state, data, val_loss, val_acc)
            if recal is not None:
                record.update(val_loss=recal["val_loss_after"],
                              val_accuracy=recal["val_accuracy_after"],
                              val_accuracy_before_recalibration=recal["val_accuracy_before"])
        metrics.append({**record, "seconds": time.perf_counter() - t0})
        if store is not None:
            store.save(epoch + 1, state, base_key, metrics)
        if log is not None:
            log(metrics[-1])
    final = nnx.merge(trainable.graphdef, state.params, state.rest)
    final.eval()
    return FitResult(final, state.params, metrics, resumed_from, recal)


def _warn_about_data(config, data, trainable, params) -> None:
    """UserWarnings for a batch that fits the training set badly, and for fewer classes in
    the data than the model has outputs (its output width read from a shape-only trace)."""
    x = np.asarray(data.x_train[:1])
    out = jax.eval_shape(lambda p, r, xb: infer(trainable.graphdef, p, r, xb), params,
                         trainable.rest, jax.ShapeDtypeStruct(x.shape, x.dtype))
    labels = np.concatenate([np.asarray(data.y_train), np.asarray(data.y_val)])
    for msg in (checks.batch_warnings(len(data.x_train), config.batch_size)
                + checks.class_warnings(labels, int(out.shape[-1]))):
        warnings.warn(msg, UserWarning, stacklevel=3)


def _recalibrate(config, graphdef, state, data, val_loss, val_acc):
    """(state with BatchNorm statistics recomputed over the training images, the accuracy
    and loss before and after), or (state, None) for a model without BatchNorm."""
    if not has_batchnorm(nnx.merge(graphdef, state.params, state.rest)):
        return state, None
    rest = recalibrated_rest(graphdef, state.params, state.rest, data.x_train,
                             batch_size=config.batch_size, seed=config.seed)
    loss, acc = evaluate(Trainable(graphdef, rest), state.params, data.x_val, data.y_val)
    return state._replace(rest=rest), {"val_accuracy_before": val_acc, "val_accuracy_after": acc,
                                       "val_loss_before": val_loss, "val_loss_after": loss}


def _start(store, config, resume, overwrite, state):
    """(state, metrics so far, epoch resumed from or None): fresh, or the latest checkpoint."""
    if store is None:
        return state, [], None
    store.open(config, resume, overwrite)
    epoch = store.latest() if resume else None
    if epoch is None:
        return state, [], None
    state = store.restore(epoch, state)
    return state, [m for m in store.read_metrics() if m["epoch"] <= epoch], epoch


def _train_epoch(config, graphdef, optimizer, state, data, epoch, steps, quiet):
    """One pass over a seeded permutation of the training set -> (state, losses, accs)."""
    order = np.random.default_rng([config.seed, epoch]).permutation(len(data.x_train))
    x_train, y_train = np.asarray(data.x_train), np.asarray(data.y_train)
    base_key = jax.random.key(config.seed)
    bar = _progress(steps, f"epoch {epoch + 1}/{config.epochs}", quiet)
    losses, accs = [], []
    for s in range(steps):
        idx = order[s * config.batch_size:(s + 1) * config.batch_size]
        params, rest, opt_state, loss, acc = jitted_train_step(
            graphdef, optimizer, config.shift, *state, jnp.asarray(x_train[idx]),
            jnp.asarray(y_train[idx]), jax.random.fold_in(base_key, epoch * steps + s))
        state = TrainState(params, rest, opt_state)
        losses.append(loss)
        accs.append(acc)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return state, np.asarray(jax.device_get(losses)), np.asarray(jax.device_get(accs))


def _check_finite(losses: np.ndarray, epoch: int, steps: int, kept: bool) -> None:
    if not np.all(np.isfinite(losses)):
        bad = epoch * steps + int(np.flatnonzero(~np.isfinite(losses))[0])
        note = f"; the last good checkpoint (epoch {epoch}) is kept" if kept else ""
        raise FloatingPointError(f"training loss became NaN/inf at step {bad} "
                                 f"(epoch {epoch + 1}){note}")


def _progress(total: int, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # noqa: PLC0415
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


def load_trained(run_dir, model: nnx.Module | None = None) -> tuple[nnx.Module, TrainConfig]:
    """The model from run_dir's latest checkpoint with its saved state, in inference mode.
    Raises if there is none."""
    store = CheckpointStore(run_dir)
    saved = store.read_config() if Path(run_dir).exists() else None
    if saved is None or not store.ckpt_dir.exists() or store.latest() is None:
        raise FileNotFoundError(f"no checkpoint in {str(run_dir)!r} (expected config.json and "
                                f"checkpoints/<epoch>); train first: jaxviz train --out {run_dir}")
    config = TrainConfig.from_dict(saved)
    model = model if model is not None else make_model(config)
    trainable, params = split_model(model)
    # The optimizer state's structure does not depend on the schedule length.
    state = TrainState(params, trainable.rest, make_optimizer(config, 1).init(params))
    state = store.restore(store.latest(), state)
    final = nnx.merge(trainable.graphdef, state.params, state.rest)
    final.eval()
    return final, config
