"""A tiny ROAR grid and a tiny `evaluate_batches` table, on one device or on a mesh; run as a
script it is one of two processes (`jax.distributed.initialize`, localhost coordinator),
each with the devices XLA_FLAGS gives it (tests/sharding/test_multiprocess.py):

    python tests/helpers/multiprocess_child.py I PORT   # process I of 2; process 0 prints
                                                        # {"grid": ..., "table": ..., ...}
"""
import json
import sys
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: `experiments` and `tests` importable

ROAR = dict(methods=("saliency", "random"), fractions=(0.3, 0.7), seeds=(0, 1), n_train=64,
            n_test=32, width=4, epochs=1, batch_size=32)


def grid_numbers(mesh) -> dict:
    """Two methods x 2 fractions x 2 seeds = 8 models in one program, on random rankings:
    {"accuracy": (2, 2, 2), "train_loss": (2, 2, 2, steps)} as lists."""
    from experiments import roar

    cfg = roar.RoarConfig(**ROAR)
    sets = roar.load_data(cfg)
    key = jax.random.key(0)
    ranks = [np.stack([np.asarray(roar.rank_pixels(
        jax.random.uniform(jax.random.fold_in(key, 2 * g + i), x.shape[:3]), key))
        for g in range(2)]) for i, x in enumerate((sets[0], sets[2]))]
    res = roar.retrain(cfg, list(cfg.methods), ranks[0], ranks[1], sets, mesh)
    return {k: np.asarray(res[k]).tolist() for k in ("accuracy", "train_loss")}


def table_numbers(mesh) -> dict:
    """{cell: per-image scores} of evaluate_batches on 2 batches of 3 images (padded on a
    mesh of 2 or 4 devices)."""
    from jaxviz.evaluate import dataset
    from tests.helpers import evaluate_dataset_child as child

    probe = child.model()
    table = dataset.evaluate_batches(probe, probe.params, list(child.batches(2, 3)),
                                     methods=["saliency"], metrics=["deletion"],
                                     metric_options={"deletion": {"pixels_per_step": 16}},
                                     key=jax.random.key(1), mesh=mesh)
    return {f"{m}|{k}": np.asarray(table[m, k].scores).tolist() for m, k in table.cells}


def main(pid: int, port: int) -> None:
    from jaxviz import sharding

    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=pid)
    mesh = sharding.batch_mesh(axis="models")  # every device of both processes
    out = {"grid": grid_numbers(mesh), "table": table_numbers(mesh),
           "processes": jax.process_count(), "devices": jax.device_count(),
           "local_devices": jax.local_device_count()}
    if pid == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
