"""The method x metric table over a data set that does not fit in memory at once: an
iterator of batches, each sharded over the devices, each batch's per-image scores handed
to a callback as it finishes (the caller persists them), finished batches skipped.

    table = evaluate_batches(probe, params, batches, methods=[...], metrics=[...],
                             key=key, mesh=sharding.batch_mesh())
    # batches: an iterable of (images, target) or (images, target, masks)

Image j of batch i draws from key split(fold_in(key, i), n_i)[j] whatever the device count,
so one device and a mesh give the same numbers. A batch whose size does not divide the
mesh is padded with copies of its last image, whose scores are dropped. Every cell is
bootstrapped over all images at the end (curves are not kept at this scale). Writing the
per-batch results and resuming a killed run: `jaxviz.report.evaluate_run.run_dataset`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import sharding
from jaxviz.core import analysis
from jaxviz.evaluate import table as table_lib

Scores = dict  # {(method, metric): (n,) np.ndarray}


def _unpack(batch, i: int):
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(f"batch {i} must be (images, target) or (images, target, masks); "
                         f"got {type(batch).__name__}"
                         f"{' of length ' + str(len(batch)) if hasattr(batch, '__len__') else ''}")
    return batch[0], batch[1], batch[2] if len(batch) == 3 else None


def _pad(tree, n_to: int):
    """Every leaf (n, ...) padded to n_to rows with copies of its last row."""
    def one(a):
        extra = n_to - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, 0)])
    return jax.tree.map(one, tree)


def batch_scores(fn, params, x, t, masks, key, p: table_lib.Plan, *, mesh=None,
                 chunk_size=None) -> Scores:
    """Per-image scores of every cell on one checked batch (n images): sharded over `mesh`
    (padded to a multiple of its size) when given. key: this batch's key. A mesh across
    processes: each process scores its share of the images on its own devices, and every
    process gets all the scores (the methods' checks read local arrays)."""
    n = x.shape[0]
    keys = jax.random.split(key, n)
    arrays = (x, t, keys, masks)
    if sharding.spans_processes(mesh):
        share, per = sharding.process_share(arrays, n)
        local = _local_scores(fn, params, share, per, p, sharding.local_mesh(mesh), chunk_size)
        return sharding.gather_shares(local, n)
    return _local_scores(fn, params, arrays, n, p, mesh, chunk_size)


def _local_scores(fn, params, arrays, n: int, p: table_lib.Plan, mesh, chunk_size) -> Scores:
    """batch_scores on arrays = (x, t, per-image keys, masks) of n images, this process."""
    if mesh is not None:
        n_dev = mesh.devices.size
        arrays = _pad(arrays, -(-n // n_dev) * n_dev)
        arrays = jax.tree.map(lambda a: sharding.shard_batch(a, mesh, mesh.axis_names[0]),
                              arrays)
    x, t, keys, masks = arrays
    res = table_lib.batch_results(fn, params, x, t, keys, p, masks=masks,
                                  chunk_size=chunk_size)
    return {cell: np.asarray(r.scores)[:n] for cell, r in res.items()}


def _check_done(scores: Scores, p: table_lib.Plan, i: int) -> Scores:
    want = {(m, s.name) for m in p.methods for s in p.specs}
    if set(scores) != want:
        raise ValueError(f"done[{i}] has cells {sorted(set(scores))}, not this table's "
                         f"{sorted(want)}: it comes from a run with other methods or metrics")
    return scores


def evaluate_batches(fn, params, batches: Iterable, *, methods, metrics, key,
                     method_options=None, metric_options=None, chunk_size=None, mesh=None,
                     done: Mapping[int, Scores] | None = None,
                     on_batch: Callable[[int, Scores], None] | None = None,
                     progress: bool = False, n_boot: int = 1000,
                     confidence: float = 0.95) -> table_lib.Table:
    """The Table over every image of every batch.

    done: {batch index: its Scores} from an earlier run, not computed again (the batch is
    still read from the iterator). on_batch(i, scores): called after each batch computed.
    mesh: a `jax.sharding.Mesh` (e.g. `sharding.batch_mesh()`); params are replicated on it.
    Other arguments as `evaluate.evaluate`."""
    done = dict(done or {})
    p = None
    table_lib.check_confidence(n_boot, confidence)
    if mesh is not None:  # on this process's devices: see batch_scores
        params = sharding.replicate(params, sharding.local_mesh(mesh))
    parts: list[Scores] = []
    with table_lib.progress_bar(None, progress) as bar:
        for i, batch in enumerate(batches):
            images, target, masks = _unpack(batch, i)
            if p is None:  # names and options checked before the first batch's work
                p = table_lib.plan(fn, methods, metrics, method_options, metric_options,
                                   masks=masks is not None)
            if i in done:
                parts.append(_check_done(done[i], p, i))
                continue
            x, t = analysis.check_inputs(fn, params, images, target)
            scores = batch_scores(fn, params, x, t, None if masks is None else jnp.asarray(masks),
                                  jax.random.fold_in(key, i), p, mesh=mesh,
                                  chunk_size=chunk_size)
            parts.append(scores)
            if on_batch is not None:
                on_batch(i, scores)
            bar.update()
    if p is None:
        raise ValueError("batches yielded nothing: give at least one (images, target) batch")
    scores = {cell: np.concatenate([part[cell] for part in parts]) for cell in parts[0]}
    return table_lib.make_table(p, scores, None, key, n_boot, confidence)
