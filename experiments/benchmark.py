"""Timings as ratios measured in one run, with achieved GFLOP/s against this machine's peak.

Command:  python -m experiments.benchmark [--quick] [--json PATH] [--only NAME,...] [--peers]
Time:     about 3-6 minutes on a 2-core CPU (--quick: about a minute).
Result:   one table; the peak is the best of numpy's and jnp.dot's fp32 2048x2048 matmul rate.
          A forward pass of the seed's CNN is ~23.98 MFLOP per image; a backward ~2x that.
"""
import argparse
import importlib
import json
import os
import platform
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from experiments import timing

SECTIONS = ["train", "fastgrad", "maximize", "occlusion", "attribution", "sharding", "peers"]


def matmul_peak(n: int | None = None) -> dict:
    """Best fp32 GFLOP/s of an n x n matmul: numpy and jnp.dot (n = 8192 on an accelerator)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    t_np = timing.best_of(lambda: a @ a, repeats=5)
    dot = jax.jit(jnp.dot)
    ja = jnp.asarray(a)
    t_jnp = timing.best_of(lambda: dot(ja, ja).block_until_ready(), repeats=5)
    flops = 2 * n ** 3
    return {"numpy_gflops": flops / t_np / 1e9, "jnp_gflops": flops / t_jnp / 1e9,
            "peak_gflops": max(flops / t_np, flops / t_jnp) / 1e9}


def train_rows(quick: bool) -> list[dict]:
    """Train step and eval throughput at batch 128 on the seed's CNN (the baseline figures)."""
    from jaxviz import train  # noqa: PLC0415
    from jaxviz.data import load_bundled  # noqa: PLC0415

    ds = load_bundled()
    config = train.TrainConfig(batch_size=128)
    trainable, params = train.split_model(train.make_model(config))
    opt = train.make_optimizer(config, 31)
    opt_state = opt.init(params)
    x, y = jnp.asarray(ds.x_train[:128]), jnp.asarray(ds.y_train[:128])
    state = {"p": params, "o": opt_state}

    def step():
        state["p"], state["o"], loss, _ = train._train_step(
            trainable.graphdef, opt, config.shift, state["p"], trainable.rest, state["o"], x, y,
            jax.random.key(0))
        loss.block_until_ready()

    compile_s = timing.seconds(step)
    t_train = timing.best_of(step, repeats=3 if quick else 8)
    ev = lambda: train._eval_step(trainable.graphdef, state["p"], trainable.rest, x, y)[0].block_until_ready()
    ev()
    t_eval = timing.best_of(ev, repeats=5 if quick else 20)
    fwd = timing.CNN_FORWARD_FLOPS * 128
    return [
        {"name": "train step (Adam, batch 128)", "settings": "MnistCNN, shift augmentation",
         "seconds": t_train, "compile_s": compile_s, "images_per_s": 128 / t_train,
         "forward_equiv": t_train / t_eval, "gflops": 3 * fwd / t_train / 1e9},
        {"name": "eval step (batch 128)", "settings": "MnistCNN, loss + accuracy",
         "seconds": t_eval, "compile_s": None, "images_per_s": 128 / t_eval,
         "forward_equiv": 1.0, "gflops": fwd / t_eval / 1e9},
    ]


def _section_rows(name: str, quick: bool) -> list[dict]:
    if name == "train":
        return train_rows(quick)
    module = importlib.import_module(f"experiments.bench_{name}")
    return module.rows(quick=quick)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every row as JSON")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--peers", action="store_true",
                        help="also time PyTorch/Captum (needs `pip install -e .[peers]`)")
    args = parser.parse_args(argv)
    wanted = args.only.split(",") if args.only else [s for s in SECTIONS if s != "peers"]
    if args.peers and "peers" not in wanted:
        wanted.append("peers")
    peak = matmul_peak()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.default_backend()}; matmul peak "
          f"{peak['peak_gflops']:.0f} GFLOP/s (numpy {peak['numpy_gflops']:.0f}, "
          f"jnp.dot {peak['jnp_gflops']:.0f})", flush=True)
    rows, failed = [], []
    for section in wanted:
        try:
            section_rows = _section_rows(section, args.quick)
        except ModuleNotFoundError as err:
            print(f"## {section}: skipped ({err})", flush=True)
            continue
        except Exception as err:  # noqa: BLE001 -- one broken section must not lose the others' rows
            print(f"## {section}: FAILED ({type(err).__name__}: {err})", flush=True)
            failed.append(section)
            continue
        print(f"## {section}", flush=True)
        for row in section_rows:
            row.setdefault("section", section)
            row["peak_gflops"] = peak["peak_gflops"]
            if row.get("gflops"):
                row["pct_of_peak"] = 100 * row["gflops"] / peak["peak_gflops"]
            print(timing.format_row(row), flush=True)
            rows.append(row)
    if args.json:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.json)), suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"peak": peak, "backend": jax.default_backend(), "rows": rows}, fh,
                      indent=2, default=float)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    if failed:
        raise SystemExit(f"sections failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
