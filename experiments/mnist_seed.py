"""The Keras recipe end to end: train its MNIST CNN, then every analysis and a report.

Command:  python -m experiments.mnist_seed [--out runs/mnist_seed] [--small]   (= `make demo`)
Time:     first run about 2-3 minutes on a 2-core CPU (most of it training); a second run
          reuses the checkpoint when its config matches and takes well under a minute.
Result:   runs/mnist_seed/report.html (and report.md, metrics.json, every figure);
          validation accuracy >= 97% on the bundled 1,000 validation digits.
"""
import argparse
import dataclasses
import time

from jaxviz import data, registry, report, train


def load_or_train(config, ds, out, quiet=False):
    """The run directory's model when its checkpoint has this config, else a fresh training.
    Returns (model, training seconds or None when reused)."""
    store = train.CheckpointStore(out)
    if (store.ckpt_dir.exists() and store.latest() == config.epochs
            and store.read_config() == config.to_dict()):
        print(f"[train] reusing the checkpoint in {out} (same config)", flush=True)
        return train.load_trained(out)[0], None
    t0 = time.perf_counter()
    log = (lambda m: print(f"  epoch {m['epoch']}/{config.epochs}: val accuracy "
                           f"{m['val_accuracy']:.4f} ({m['seconds']:.1f}s)", flush=True))
    model = train.fit(config, ds, out, quiet=quiet, log=log, overwrite=True).model
    print(f"[train] {time.perf_counter() - t0:.1f}s -> {out}/checkpoints", flush=True)
    return model, time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/mnist_seed")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--small", action="store_true",
                        help="tiny run for tests: few steps, the seed's six attribution methods")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    config = train.TrainConfig(seed=args.seed)
    epochs = args.epochs if args.epochs is not None else (1 if args.small else None)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    ds = data.load_bundled()
    if args.small:  # a test-sized run: part of the data, one short epoch
        ds = ds._replace(x_train=ds.x_train[:512], y_train=ds.y_train[:512])
    t0 = time.perf_counter()
    model, train_seconds = load_or_train(config, ds, args.out, quiet=args.quiet)
    probe = registry.to_probe(registry.build(config.model, config.seed), model)
    metrics = report.run_report(probe, probe.params, ds.x_val, ds.y_val, args.out,
                                seed=args.seed, small=args.small, train_seconds=train_seconds,
                                subject=report.MNIST_SEED)
    print(f"done in {time.perf_counter() - t0:.1f}s: validation accuracy "
          f"{metrics['val_accuracy']:.4f}; open {args.out}/report.html", flush=True)


if __name__ == "__main__":
    main()
