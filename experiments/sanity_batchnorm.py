"""The model-randomisation sanity check on BatchNorm nets, NNX and Linen (docs/sanity.md).

Command:  python -m experiments.sanity_batchnorm [--train 2000] [--epochs 3] [--images 16]
          [--key 0]
Time:     about a minute on a 2-core CPU (most of it the two trainings).
Result:   each model's validation accuracy and the cascade's mean Spearman correlation per
          layer for saliency and Grad-CAM; every value finite, the curve falling.

The same small architecture twice, two stride-2 conv + BatchNorm + ReLU blocks (16 and 32
channels), a linear head on the flattened 7 x 7 x 32 features, on the bundled digits: NNX
trained by `jaxviz.train.fit`, Linen by a plain optax loop here (fit trains NNX models).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx

from jaxviz import data, train
from jaxviz.attribution import sanity
from jaxviz.core import probe as probe_lib

WIDTHS = (16, 32)
METHODS = ("saliency", "grad_cam")


class NNXNet(nnx.Module):
    """x: (N, 28, 28, 1) -> (N, 10)."""

    input_shape = (28, 28, 1)

    def __init__(self, rngs: nnx.Rngs):
        ins = (1, *WIDTHS[:-1])
        self.convs = nnx.List([nnx.Conv(i, w, (3, 3), strides=2, rngs=rngs)
                               for i, w in zip(ins, WIDTHS)])
        self.bns = nnx.List([nnx.BatchNorm(w, rngs=rngs) for w in WIDTHS])
        self.head = nnx.Linear(7 * 7 * WIDTHS[-1], 10, rngs=rngs)

    def __call__(self, x):
        for conv, bn in zip(self.convs, self.bns):
            x = nnx.relu(bn(conv(x)))
        return self.head(x.reshape(x.shape[0], -1))


class LinenNet(nn.Module):
    """The same net in Linen; `train` switches BatchNorm to batch statistics."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, w in enumerate(WIDTHS, start=1):
            x = nn.Conv(w, (3, 3), strides=2, name=f"conv{i}")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                     name=f"bn{i}")(x))
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))


def train_nnx(ds, epochs: int, seed: int = 0):
    """NNXNet trained by fit. -> (Probe, validation accuracy)."""
    config = train.TrainConfig(epochs=epochs, batch_size=64, shift=0, seed=seed)
    result = train.fit(config, ds, model=NNXNet(nnx.Rngs(seed)), quiet=True)
    return probe_lib.from_model(result.model), result.metrics[-1]["val_accuracy"]


def train_linen(ds, epochs: int, seed: int = 0):
    """LinenNet trained by Adam (lr 3e-3, batches of 64). -> (Probe, validation accuracy)."""
    module, tx = LinenNet(), optax.adam(3e-3)
    v = jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    params, stats, opt = v["params"], v["batch_stats"], tx.init(v["params"])

    @jax.jit
    def step(params, stats, opt, x, y):
        def loss(p):
            logits, upd = module.apply({"params": p, "batch_stats": stats}, x, train=True,
                                       mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd
        (_, upd), g = jax.value_and_grad(loss, has_aux=True)(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), upd["batch_stats"], opt

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(ds.x_train))
        for i in range(0, len(order) - 63, 64):
            b = order[i:i + 64]
            params, stats, opt = step(params, stats, opt, ds.x_train[b], ds.y_train[b])
    probe = probe_lib.from_model(module, {"params": params, "batch_stats": stats},
                                 input_shape=(28, 28, 1))
    acc = float((np.asarray(probe(probe.params, ds.x_val)).argmax(-1) == ds.y_val).mean())
    return probe, acc


def curves(probe, ds, n_images: int, key: int = 0, methods=METHODS) -> dict:
    """cascading_randomization on ds's first n_images validation digits, their labels."""
    x, y = ds.x_val[:n_images], ds.y_val[:n_images]
    return sanity.cascading_randomization(probe, probe.params, x, y, key=jax.random.key(key),
                                          methods=methods)


def run(n_train: int = 2000, epochs: int = 3, n_images: int = 16, key: int = 0,
        methods=METHODS, n_val: int | None = None) -> dict:
    """{"nnx": {"accuracy", "layers", method: [...]}, "linen": {...}}. n_val: validation
    digits for the accuracy (default all 1,000); the first n_images of them are checked."""
    full = data.load_bundled()
    # The bundled digits are sorted by class: a seeded shuffle, so every subset has them all.
    tr = np.random.default_rng(0).permutation(len(full.x_train))[:n_train]
    va = np.random.default_rng(1).permutation(len(full.x_val))[:n_val]
    ds = data.Dataset(full.x_train[tr], full.y_train[tr], full.x_val[va], full.y_val[va],
                      full.name)
    out = {}
    for kind, fit_fn in (("nnx", train_nnx), ("linen", train_linen)):
        probe, acc = fit_fn(ds, epochs)
        r = curves(probe, ds, n_images, key, methods)
        out[kind] = {"accuracy": acc, "layers": r["layers"],
                     **{m: [float(v) for v in r[m]] for m in methods}}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2000, help="training images")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=16, help="validation digits checked")
    ap.add_argument("--key", type=int, default=0, help="PRNG key of the randomised weights")
    args = ap.parse_args(argv)
    res = run(args.train, args.epochs, args.images, args.key)
    print(f"jax {jax.__version__}; {args.train} training digits, {args.epochs} epochs, "
          f"{args.images} validation digits (seeded shuffle), key {args.key}")
    for kind, r in res.items():
        print(f"\n{kind}: validation accuracy {r['accuracy']:.3f}")
        print("| method | " + " | ".join(r["layers"]) + " |")
        print("|---|" + "---|" * len(r["layers"]))
        for m in METHODS:
            print(f"| {m} | " + " | ".join(f"{v:.2f}" for v in r[m]) + " |")
        bad = [m for m in METHODS if not np.isfinite(r[m]).all()]
        print("no NaN" if not bad else f"NaN in {bad}")


if __name__ == "__main__":
    main()
