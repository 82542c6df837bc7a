"""Long runs with bounded memory and a progress bar: occlusion over the 1,000 validation
digits and activation maximization of all 64 conv2 channels.

Command:  python -m experiments.long_runs [--checkpoint runs/mnist_seed] [--digits 1000]
Time:     about a minute on a 2-core CPU (after `make demo` has trained the model).
Result:   per-stage seconds and the process's peak RSS, which stays flat as --digits grows
          because images go through in fixed-size groups (same jit, no recompilation).
"""
import argparse
import resource
import sys
import time

import jax
import numpy as np

from jaxviz import data, maximize as mx, train
from jaxviz.core import probe as probe_lib
from jaxviz.occlusion import grouped_occlusion


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/mnist_seed")
    parser.add_argument("--digits", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    model, _ = train.load_trained(args.checkpoint)
    probe = probe_lib.from_model(model)
    ds = data.load_bundled()
    out = {}
    t0 = time.perf_counter()
    maps = grouped_occlusion(probe, probe.params, ds.x_val[:args.digits], ds.y_val[:args.digits],
                             group=64, window=4, stride=2,
                             progress=not args.quiet and sys.stderr.isatty()).map
    out["occlusion"] = {"digits": len(maps), "seconds": time.perf_counter() - t0,
                        "peak_rss_mb": peak_rss_mb(), "finite": bool(np.isfinite(maps).all())}
    t0 = time.perf_counter()
    res = mx.all_units(probe, probe.params, "conv2", units=list(range(args.channels)),
                       key=jax.random.key(0), steps=args.steps,
                       regularizers=(mx.total_variation(10.0),))
    out["maximize"] = {"channels": int(res.best.shape[0]), "seconds": time.perf_counter() - t0,
                       "peak_rss_mb": peak_rss_mb(), "finite": bool(np.isfinite(res.best).all())}
    for stage, r in out.items():
        print(f"[{stage}] " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in r.items()), flush=True)
    return out


if __name__ == "__main__":
    main()
