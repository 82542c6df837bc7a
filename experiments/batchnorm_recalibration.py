"""Stale BatchNorm statistics after a short run, and `fit`'s recalibration that fixes them.

Command:  python -m experiments.batchnorm_recalibration [--epochs 8] [--seed 0]
Result:   one line per number, recorded in docs/batchnorm.md: the validation accuracy of a
          small NNX BatchNorm net trained by `train.fit` on the bundled digits, in inference
          mode with the running statistics training left (momentum 0.99), after `fit`'s
          recalibration, with the statistics of the whole training set computed in one
          batch (an independent route to the same thing), and with each validation batch
          normalised by its own statistics.
"""
from __future__ import annotations

import argparse
import time

import jax
from flax import nnx

from jaxviz import data, train


class SmallBNNet(nnx.Module):
    """Two conv + BatchNorm + ReLU blocks, global mean pool, linear head.
    x: (N, 28, 28, 1) -> (N, 10) logits."""

    input_shape = (28, 28, 1)

    def __init__(self, rngs: nnx.Rngs, width: int = 16):
        self.conv1 = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, rngs=rngs)  # Flax's default momentum, 0.99
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=2, rngs=rngs)
        self.bn2 = nnx.BatchNorm(2 * width, rngs=rngs)
        self.head = nnx.Linear(2 * width, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = nnx.relu(self.bn2(self.conv2(h)))
        return self.head(h.mean(axis=(1, 2)))


def small_bn_net(seed: int = 0) -> SmallBNNet:
    return SmallBNNet(nnx.Rngs(seed))


def accuracy(model, x, y) -> float:
    """Inference-mode accuracy of an NNX model on x: (N, H, W, C), y: (N,)."""
    (graphdef, rest), params = train.split_model(model)
    return train.evaluate(train.Trainable(graphdef, rest), params, x, y)[1]


def measure(epochs: int = 8, seed: int = 0, ds=None) -> dict:
    """The four accuracies of the module docstring, and the training seconds."""
    ds = data.load_bundled() if ds is None else ds
    config = train.TrainConfig(epochs=epochs, shift=0, seed=seed)
    t0 = time.perf_counter()
    result = train.fit(config, ds, model=small_bn_net(seed), quiet=True)
    seconds = time.perf_counter() - t0
    whole = train.recalibrate_batchnorm(result.model, ds.x_train, batch_size=len(ds.x_train))
    batch = train.batchnorm_accuracies(result.model, ds.x_val, ds.y_val, seed=seed)
    return {"epochs": epochs, "seed": seed, "train_seconds": seconds,
            "running_statistics": result.recalibration["val_accuracy_before"],
            "fit_recalibrated": result.recalibration["val_accuracy_after"],
            "whole_training_set_statistics": accuracy(whole, ds.x_val, ds.y_val),
            "batch_statistics": batch["batch_statistics"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = measure(args.epochs, args.seed)
    print(f"jax {jax.__version__}, {args.epochs} epochs, seed {args.seed}, "
          f"fit {out['train_seconds']:.1f}s; validation accuracy (1,000 bundled digits):")
    for k in ("running_statistics", "fit_recalibrated", "whole_training_set_statistics",
              "batch_statistics"):
        print(f"  {k:30s} {out[k]:.4f}")
    gap = abs(out["fit_recalibrated"] - out["whole_training_set_statistics"])
    print(f"  |fit_recalibrated - whole_training_set_statistics| = {gap:.4f}")
    return out


if __name__ == "__main__":
    main()
