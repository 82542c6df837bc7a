"""The method x metric table over a data set, kept in a run directory as it goes, so a
killed run resumes without recomputing finished batches.

    table = run_dataset(probe, params, batches, "runs/eval", methods=[...],
                        metrics=[...], seed=0, mesh=sharding.batch_mesh())

out_dir/evaluate_config.json   the settings (a resumed run must match them)
out_dir/batch_000007.npz       batch 7's per-image scores, one array per "method|metric",
                               written atomically (jaxviz.io) right after the batch
out_dir/evaluate_table.json    the final table (means, intervals, arrows) and .md
Batches are numbered by their order in the iterator, which must yield the same batches
in the same order on a resumed run.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import numpy as np

from jaxviz import io
from jaxviz.core import checks
from jaxviz.evaluate import dataset
from jaxviz.evaluate.table import Table

CONFIG = "evaluate_config.json"
SEP = "|"


def batch_path(out_dir: Path, i: int) -> Path:
    return Path(out_dir) / f"batch_{i:06d}.npz"


def _config(methods, metrics, seed, method_options, metric_options, chunk_size) -> dict:
    cfg = {"methods": list(methods), "metrics": list(metrics), "seed": seed,
           "method_options": method_options or {}, "metric_options": metric_options or {},
           "chunk_size": chunk_size}
    return json.loads(json.dumps(cfg, default=repr))  # as it reads back from the file


def _finished(out_dir: Path) -> dict[int, dict]:
    """{batch index: scores} of every batch file in out_dir."""
    done = {}
    for path in sorted(out_dir.glob("batch_*.npz")):
        with np.load(path) as f:
            done[int(path.stem.split("_")[1])] = {
                tuple(k.split(SEP, 1)): np.asarray(f[k]) for k in f.files}
    return done


def run_dataset(fn, params, batches: Iterable, out_dir, *, methods, metrics, seed: int = 0,
                method_options=None, metric_options=None, chunk_size=None, mesh=None,
                progress: bool = False, log: Callable[[str], None] = print) -> Table:
    """`evaluate.dataset.evaluate_batches` with its per-batch scores in out_dir: batches
    already there are loaded, not computed. seed: the run's PRNG seed (key(seed))."""
    out = io.ensure_dir(out_dir, "out_dir")
    seed = checks.positive_int(seed, "seed", 0)
    cfg = _config(methods, metrics, seed, method_options, metric_options, chunk_size)
    if (out / CONFIG).exists():
        old = json.loads((out / CONFIG).read_text())
        if old != cfg:
            raise ValueError(f"{out} holds an evaluation run with other settings ({old}); "
                             f"resume it with those or use another out_dir")
    else:
        io.write_json(out / CONFIG, cfg)
    done = _finished(out)
    if done:
        log(f"[evaluate] resuming: batches {sorted(done)} already in {out}")

    def save(i: int, scores: dict) -> None:
        io.save_npz(batch_path(out, i), **{SEP.join(cell): v for cell, v in scores.items()})
        log(f"[evaluate] batch {i} scored -> {batch_path(out, i).name}")

    table = dataset.evaluate_batches(
        fn, params, batches, methods=methods, metrics=metrics, key=jax.random.key(seed),
        method_options=method_options, metric_options=metric_options, chunk_size=chunk_size,
        mesh=mesh, done=done, on_batch=save, progress=progress)
    io.write_json(out / "evaluate_table.json", table.to_dict())
    io.write_text(out / "evaluate_table.md", table.to_markdown() + "\n")
    log(f"[evaluate] {table.n_images} images -> {out / 'evaluate_table.md'}")
    return table
