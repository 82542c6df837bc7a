"""A run directory: config.json, metrics.jsonl and one Orbax checkpoint per epoch.

A directory that holds a run (a checkpoint or metrics) is never replaced unless asked
(`overwrite`); a resumed run may be given more epochs, nothing else may change.

A checkpoint holds everything a step changes (`TrainState`): the parameters, the rest of
the model's state (BatchNorm statistics, RNG counters; PRNG keys as their raw key data)
and the optimizer state. Restoring is strict: the first parameter or state entry whose
presence, shape or dtype differs is named instead of loading something else.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxviz import io
from jaxviz.train.config import TrainConfig
from jaxviz.train.step import TrainState


def _is_key(a) -> bool:
    return hasattr(a, "dtype") and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def storable_state(rest) -> dict:
    """The rest of a model's state as a dict of plain arrays (PRNG keys as key data)."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a,
                        nnx.to_pure_dict(rest))


def load_state(rest, stored: dict):
    """`rest` (an nnx.State) with the values of `stored` (from storable_state)."""
    like = nnx.to_pure_dict(rest)
    values = jax.tree.map(
        lambda l, s: jax.random.wrap_key_data(s, impl=jax.random.key_impl(l)) if _is_key(l) else s,
        like, stored)
    nnx.replace_by_pure_dict(rest, values)
    return rest


class CheckpointStore:
    """run_dir/config.json, run_dir/metrics.jsonl, run_dir/checkpoints/<epoch> (Orbax)."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"

    def open(self, config: TrainConfig, resume: bool, overwrite: bool = False) -> None:
        """Make run_dir writable and consistent with `config`: check a resumed run's config
        (all but `epochs`, which may grow), refuse to replace a run unless `overwrite`,
        drop partial saves, write config.json."""
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PermissionError(f"run directory {str(self.run_dir)!r} is not writable: {err}") from err
        if not os.access(self.run_dir, os.W_OK):
            raise PermissionError(f"run directory {str(self.run_dir)!r} is not writable")
        saved = self.read_config()
        if resume and saved is not None:
            check_resumable(self.run_dir, saved, config, self.latest())
        elif not resume and self.holds_run():
            self.refuse_replacing(resume, overwrite)
            shutil.rmtree(self.ckpt_dir)  # asked to replace: never mix an old run with a new one
            self.ckpt_dir.mkdir()
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        self.clean_partial()
        io.write_text(self.run_dir / "config.json", json.dumps(config.to_dict(), indent=2))

    def refuse_replacing(self, resume: bool, overwrite: bool) -> None:
        """Raise FileExistsError when a fresh run (neither resume nor overwrite) would
        replace the run already in run_dir."""
        if not resume and not overwrite and self.holds_run():
            raise FileExistsError(
                f"run directory {str(self.run_dir)!r} already holds a run (checkpoints up to "
                f"epoch {self.latest() or 0}); replace it with --overwrite "
                f"(fit(..., overwrite=True)) or continue it with --resume (resume=True)")

    def holds_run(self) -> bool:
        """True when run_dir has a checkpoint or metrics of a run: something to lose."""
        return self.latest() is not None or bool(self.read_metrics())

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

    def save(self, epoch: int, state: TrainState, key, metrics) -> None:
        tree = {"params": nnx.to_pure_dict(state.params), "state": storable_state(state.rest),
                "opt_state": state.opt_state, "key": jax.random.key_data(key)}
        with self._manager() as mngr:
            mngr.save(epoch, args=ocp.args.StandardSave(tree))
            mngr.wait_until_finished()
        io.write_text(self.run_dir / "metrics.jsonl",
                      "".join(json.dumps(m) + "\n" for m in metrics))

    def restore(self, epoch: int, state: TrainState) -> TrainState:
        """Restore into the structure of `state`; a mismatch names the first differing
        parameter or state entry instead of loading something else."""
        expected = {"params": nnx.to_pure_dict(state.params), "state": storable_state(state.rest),
                    "opt_state": state.opt_state,
                    "key": jax.random.key_data(jax.random.key(0))}
        where = f"checkpoint {self.ckpt_dir / str(epoch)}"
        with self._manager() as mngr:
            raw = mngr.restore(epoch, args=ocp.args.StandardRestore())
            check_same_structure(expected["params"], raw["params"], where)
            # Checkpoints written before the state was stored have no "state" entry.
            check_same_structure(expected["state"], raw.get("state", {}), where, "state entry")
            if "state" not in raw:
                del expected["state"]
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, expected)
            tree = mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
        nnx.replace_by_pure_dict(state.params, tree["params"])
        rest = load_state(state.rest, tree["state"]) if "state" in tree else state.rest
        return TrainState(state.params, rest, tree["opt_state"])


def check_resumable(run_dir, saved: dict, config: TrainConfig, latest: int | None) -> None:
    """Raise ValueError unless `config` may continue the run saved with `saved`: every
    field equal but `epochs`, which may not fall below the epochs already done."""
    ours, theirs = config.to_dict(), dict(saved)
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if k != "epochs" and theirs.get(k) != v}
    if diff:
        raise ValueError(f"--resume: the checkpoint in {run_dir} was made with a "
                         f"different config (field: (checkpoint, requested)): {diff}")
    if latest is not None and config.epochs < latest:
        raise ValueError(f"--resume: the run in {run_dir} has already trained {latest} epochs; "
                         f"epochs must be at least {latest} to continue it, got {config.epochs}")


def check_same_structure(expected: dict, saved, where: str, what: str = "parameter") -> None:
    """Raise ValueError naming the first `what` whose presence, shape or dtype differs."""
    flat_e = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    flat_s = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(saved)[0]}
    for name in sorted(set(flat_e) | set(flat_s)):
        e, s = flat_e.get(name), flat_s.get(name)
        if e is None or s is None:
            raise ValueError(f"{where} does not fit this model: {what} {name} is "
                             f"{'missing from the checkpoint' if s is None else 'not in the model'}")
        if tuple(e.shape) != tuple(s.shape) or np.dtype(e.dtype) != np.dtype(s.dtype):
            raise ValueError(f"{where} does not fit this model: {what} {name} is "
                             f"{tuple(s.shape)} {np.dtype(s.dtype)} in the checkpoint, "
                             f"{tuple(e.shape)} {np.dtype(e.dtype)} in the model")
