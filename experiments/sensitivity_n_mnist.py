"""Sensitivity-n on digits (Ancona et al. 2018, "Towards better understanding of
gradient-based attribution methods for deep neural networks", the MNIST curves of its
Figure 4): for subset sizes n from one pixel to 90% of them, how well does the summed
attribution of n random pixels predict the output drop when they are set to 0?

Command:  python -m experiments.sensitivity_n_mnist [--out runs/sensitivity_n_mnist]
          [--methods occlusion_1 gradient_x_input ...] [--n-images 50] [--n-runs 100]
Does:     trains (or reuses, from OUT/model) the small CNN of experiments.deeplift_mnist on
          the bundled digits; for seeded test digits and each method's map of the true
          class, `jaxviz.evaluate.sensitivity_n` (baseline 0, logits) over
          `sensitivity_n.DEFAULT_RATIOS` of the 784 pixels.
Result:   OUT/methods/<method>.json as each finishes (a rerun reuses them), OUT/results.json,
          OUT/sensitivity_n.png (mean correlation against n / 784, log x axis).
Time:     docs/sensitivity_n_mnist.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import attribution as A
from jaxviz import io
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate import sensitivity_n as SN
from jaxviz.plot.core import STYLE, new_figure

from experiments import deeplift_mnist

# The paper's methods (occlusion of single pixels, gradient x input, IG, DeepLIFT rescale,
# epsilon-LRP), the plain gradient and saliency, and a random map as a floor.
METHODS = ("occlusion_1", "gradient_x_input", "integrated_gradients", "deeplift_rescale",
           "epsilon_lrp", "gradient", "saliency", "random")
_REGISTERED = {
    "occlusion_1": ("occlusion", dict(window=(1, 1), stride=(1, 1))),
    "gradient_x_input": ("gradient_x_input", {}),
    "integrated_gradients": ("integrated_gradients", dict(n_steps=64, baselines="zeros")),
    "deeplift_rescale": ("deeplift", dict(rule="rescale", baselines="zeros")),
    "epsilon_lrp": ("lrp", dict(composite="epsilon")),
    "gradient": ("saliency", dict(abs=False)),
    "saliency": ("saliency", {}),
}


@dataclasses.dataclass(frozen=True)
class SensitivityNConfig:
    methods: tuple[str, ...] = METHODS
    n_images: int = 50
    n_runs: int = 100  # subsets per size (the paper: 100)
    seed: int = 0
    model: deeplift_mnist.DeepLiftConfig = deeplift_mnist.DeepLiftConfig()

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}; got "
                             f"{unknown or self.methods}")


def maps_of(name: str, probe, x, y, key) -> jax.Array:
    """(N, H, W, C) images -> (N, H, W) maps of the true class."""
    if name == "random":
        return jax.random.normal(key, x.shape[:3])
    registered, options = _REGISTERED[name]
    m = A.attribute(registered, probe, probe.params, x, y, **options).map
    return m.sum(-1) if m.ndim == 4 else m


def _open_run(cfg, out: Path) -> None:
    path = out / "config.json"
    conf = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if path.exists() and json.loads(path.read_text()) != conf:
        raise ValueError(f"--out {out} holds a run with another config ({path}); give "
                         f"another --out")
    io.write_json(path, conf)


def run(cfg: SensitivityNConfig, out, *, log=print) -> dict:
    cfg.validate()
    out = Path(out)
    _open_run(cfg, out)
    t0 = time.perf_counter()
    ds = deeplift_mnist.load_data(cfg.model)
    model, _ = deeplift_mnist.trained_model(cfg.model, ds, out / "model", log)
    probe = probe_lib.from_model(model, input_shape=tuple(ds.x_train.shape[1:]))
    te = np.sort(np.random.default_rng(cfg.seed).permutation(len(ds.y_val))[:cfg.n_images])
    x, y = jnp.asarray(ds.x_val[te]), jnp.asarray(ds.y_val[te])
    sizes = SN.check_sizes(None, x.shape[1] * x.shape[2])
    key = jax.random.key(cfg.seed)

    def compute(name):
        t1 = time.perf_counter()
        a = maps_of(name, probe, x, y, A.method_key(key, name))
        res = SN.sensitivity_n(probe, probe.params, x, y, a, key=jax.random.fold_in(key, 1),
                               sizes=sizes, n_runs=cfg.n_runs)
        return dict(method=name, sizes=list(sizes), correlation=np.asarray(res.curve).tolist(),
                    seconds=time.perf_counter() - t1)

    def summary(r):
        return ("mean correlation by n: " + ", ".join(
            f"{n} {c:.3f}" for n, c in zip(sizes, np.asarray(r["correlation"]).mean(0)))
            + f" ({r['seconds']:.1f}s)")
    methods = deeplift_mnist.per_method(cfg.methods, out, compute, summary, log)
    results = dict(config=dataclasses.asdict(cfg), images=te.tolist(), methods=methods,
                   seconds=time.perf_counter() - t0)
    io.write_json(out / "results.json", results)
    io.save_figure(figure(results), out / "sensitivity_n.png", rc=STYLE)
    return results


def figure(results: dict):
    """Mean Pearson correlation (over images) against the fraction of pixels in the subset."""
    import matplotlib  # noqa: PLC0415

    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, r) in enumerate(results["methods"].items()):
        c = np.asarray(r["correlation"])
        ratio = np.asarray(r["sizes"]) / 784
        colour = "black" if name == "random" else matplotlib.colormaps["tab10"](i % 10)
        ax.plot(ratio, c.mean(0), "--" if name == "random" else "-o", ms=3, color=colour,
                label=name)
    ax.set_xscale("log")
    ax.set_xlabel("n / pixels (subset size ratio)")
    ax.set_ylabel("Pearson(Σ attribution over subset, output drop)")
    ax.set_title(f"sensitivity-n, {len(results['images'])} test digits, "
                 f"{results['config']['n_runs']} subsets per n")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def table(results: dict) -> str:
    names = list(results["methods"])
    sizes = results["methods"][names[0]]["sizes"]
    lines = ["| method | " + " | ".join(f"n={n}" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name in names:
        c = np.asarray(results["methods"][name]["correlation"]).mean(0)
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in c) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/sensitivity_n_mnist")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {' '.join(METHODS)}")
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-runs", type=int, default=None)
    args = p.parse_args(argv)
    over = {k: v for k, v in dict(methods=args.methods and tuple(args.methods),
                                   n_images=args.n_images, n_runs=args.n_runs).items()
            if v is not None}
    results = run(SensitivityNConfig(**over), args.out, log=lambda s: print(s, flush=True))
    print(table(results))
    print(f"done in {results['seconds']:.0f}s: {Path(args.out) / 'results.json'}, "
          f"{Path(args.out) / 'sensitivity_n.png'}")


if __name__ == "__main__":
    main()
