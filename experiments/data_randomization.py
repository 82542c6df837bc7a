"""The data randomization test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
section 5): train the same CNN on the true labels and on permuted labels (until it fits
them); a method whose maps of the two models look alike cannot be explaining what the
model learned from the labels.

Command:  python -m experiments.data_randomization [--out runs/data_randomization]
          [--methods gradient guided_backprop ...] [--n-train 500] [--overwrite]
Does:     takes a seeded subset of the bundled training digits, trains (or reuses, from
          OUT/model_true and OUT/model_permuted) a small CNN on its true labels and the
          same CNN on a permutation of them (its fit is measured on those very images);
          each method's maps of both models for the true class of test digits are
          compared per image with Spearman rank correlation (signed and of |map|), SSIM
          and HOG similarity (both of |map|).
Result:   OUT/methods/<method>.json as each method finishes (a rerun reuses them),
          OUT/results.json, OUT/data_randomization.png (the similarities per method, and
          example maps of both models).
Time:     docs/data_randomization.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxviz import attribution as A
from jaxviz import data as data_lib
from jaxviz import io
from jaxviz.attribution.sanity import rank_correlation
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate.hog import hog_similarity
from jaxviz.evaluate.randomisation import ssim
from jaxviz.plot.core import STYLE, new_figure
from jaxviz.train import TrainConfig, fit, load_trained

from experiments.roar import SmallCNN

METHODS = ("gradient", "saliency", "gradient_x_input", "guided_backprop",
           "integrated_gradients", "smoothgrad", "deeplift", "lrp", "grad_cam", "occlusion")
MEASURES = ("spearman", "spearman_abs", "ssim_abs", "hog_abs")


@dataclasses.dataclass(frozen=True)
class DataRandomizationConfig:
    """Defaults sized for a 2-core CPU: 500 training digits (so permuted labels can be
    memorised in a few minutes), a small CNN, 100 test digits compared."""

    methods: tuple[str, ...] = METHODS
    n_train: int = 500
    n_images: int = 100
    width: int = 32
    epochs_true: int = 20
    epochs_permuted: int = 150
    batch_size: int = 50
    learning_rate: float = 3e-3
    seed: int = 0
    ig_steps: int = 32
    noise_samples: int = 16
    noise_sigma: float = 0.15

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}; got "
                             f"{unknown or self.methods}")
        for name in ("n_train", "n_images", "epochs_true", "epochs_permuted"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")


def datasets(cfg: DataRandomizationConfig):
    """(true-label data, permuted-label data, test images, their labels). The permuted
    model is validated on its own training images and labels: its val accuracy is its fit."""
    ds = data_lib.load("bundled")
    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.permutation(len(ds.y_train))[:cfg.n_train])
    x, y = ds.x_train[idx], ds.y_train[idx]
    y_perm = y[rng.permutation(len(y))]
    true = ds._replace(x_train=x, y_train=y)
    permuted = ds._replace(x_train=x, y_train=y_perm, x_val=x, y_val=y_perm)
    te = np.sort(np.random.default_rng(cfg.seed + 1).permutation(len(ds.y_val))[:cfg.n_images])
    return true, permuted, ds.x_val[te], ds.y_val[te]


def trained(cfg, data, epochs: int, run_dir: Path, log) -> tuple[nnx.Module, dict]:
    """The model of run_dir's checkpoint, or trained now: (model, last metrics record)."""
    shape = tuple(data.x_train.shape[1:])
    new = SmallCNN(shape, cfg.width, rngs=nnx.Rngs(cfg.seed))
    try:
        model, _ = load_trained(run_dir, model=new)
        record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        log(f"[model] reused {run_dir}")
        return model, record
    except FileNotFoundError:
        pass
    config = TrainConfig(epochs=epochs, batch_size=cfg.batch_size,
                         learning_rate=cfg.learning_rate, shift=0, seed=cfg.seed)
    res = fit(config, data, run_dir, model=new, quiet=True, overwrite=True)
    log(f"[model] {run_dir.name}: train accuracy {res.metrics[-1]['train_accuracy']:.3f}, "
        f"val accuracy {res.metrics[-1]['val_accuracy']:.3f}")
    return res.model, res.metrics[-1]


def maps_of(name: str, cfg, probe, x, y, key) -> np.ndarray:
    """(N, H, W) signed maps of one method (summed over channels)."""
    registered, options = {
        "gradient": ("saliency", dict(abs=False)), "saliency": ("saliency", {}),
        "gradient_x_input": ("gradient_x_input", {}), "guided_backprop": ("guided_backprop", {}),
        "integrated_gradients": ("integrated_gradients", dict(n_steps=cfg.ig_steps)),
        "smoothgrad": ("smoothgrad", dict(n_samples=cfg.noise_samples, sigma=cfg.noise_sigma)),
        "deeplift": ("deeplift", {}), "lrp": ("lrp", dict(composite="epsilon_plus")),
        "grad_cam": ("grad_cam", dict(layer="conv2")),
        "occlusion": ("occlusion", dict(window=(4, 4), stride=(2, 2))),
    }[name]
    keyed = dict(key=A.method_key(key, name)) if A.get(registered).needs_key else {}
    m = A.attribute(registered, probe, probe.params, jnp.asarray(x), jnp.asarray(y),
                    **keyed, **options).map
    return np.asarray(m.sum(-1) if m.ndim == 4 else m)


def similarities(a: np.ndarray, b: np.ndarray) -> dict:
    """The paper's four measures per image, (N, H, W) maps x2 -> {measure: (N,) list}."""
    aa, ab = jnp.abs(jnp.asarray(a)), jnp.abs(jnp.asarray(b))
    return {"spearman": rank_correlation(a, b).tolist(),
            "spearman_abs": rank_correlation(np.abs(a), np.abs(b)).tolist(),
            "ssim_abs": np.asarray(ssim(aa, ab)).tolist(),
            "hog_abs": np.asarray(hog_similarity(aa, ab)).tolist()}


def _open_run(cfg, out: Path, overwrite: bool) -> None:
    path = out / "config.json"
    conf = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if path.exists() and not overwrite and json.loads(path.read_text()) != conf:
        raise ValueError(f"--out {out} holds a run with another config ({path}); give "
                         f"another --out, or --overwrite to start it again")
    if overwrite:
        for sub in ("methods", "model_true", "model_permuted"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
    io.write_json(path, conf)


def run(cfg: DataRandomizationConfig, out, *, overwrite: bool = False, log=print) -> dict:
    """The whole test into out (resumed: trained models and finished methods reused)."""
    cfg.validate()
    out = Path(out)
    _open_run(cfg, out, overwrite)
    t0 = time.perf_counter()
    true, permuted, x, y = datasets(cfg)
    m_true, rec_true = trained(cfg, true, cfg.epochs_true, out / "model_true", log)
    m_perm, rec_perm = trained(cfg, permuted, cfg.epochs_permuted, out / "model_permuted", log)
    shape = tuple(x.shape[1:])
    probes = [probe_lib.from_model(m, input_shape=shape) for m in (m_true, m_perm)]
    key, methods, examples = jax.random.key(cfg.seed), {}, {}
    for name in cfg.methods:
        path = out / "methods" / f"{name}.json"
        a, b = (maps_of(name, cfg, p, x, y, key) for p in probes)
        examples[name] = (a[:2], b[:2])
        if path.exists():
            methods[name] = json.loads(path.read_text())
            log(f"[{name}] reused {path}")
            continue
        methods[name] = dict(method=name, **similarities(a, b))
        io.write_json(path, methods[name])
        log(f"[{name}] mean similarity true vs permuted: " + ", ".join(
            f"{k} {np.nanmean(methods[name][k]):.3f}" for k in MEASURES))
    results = dict(config=dataclasses.asdict(cfg), true_model=rec_true,
                   permuted_model=rec_perm, methods=methods, seconds=time.perf_counter() - t0)
    io.write_json(out / "results.json", results)
    io.save_figure(figure(results, examples, x[:2]), out / "data_randomization.png", rc=STYLE)
    return results


def table(results: dict) -> str:
    lines = ["| method | " + " | ".join(MEASURES) + " |", "|---|" + "---|" * len(MEASURES)]
    for name, r in results["methods"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{np.nanmean(r[k]):.3f} ± {np.nanstd(r[k]) / np.sqrt(len(r[k])):.3f}"
            for k in MEASURES) + " |")
    return "\n".join(lines)


def figure(results: dict, examples: dict, images: np.ndarray):
    """Left: mean similarity (true-label vs permuted-label model) per method and measure;
    right: |map| of both models for two test digits, one row per method."""
    names = list(results["methods"])
    fig = new_figure(11, 1.0 + 0.9 * len(names))
    ax = fig.add_axes([0.08, 0.1, 0.42, 0.8])
    width = 0.8 / len(MEASURES)
    for j, k in enumerate(MEASURES):
        means = [np.nanmean(results["methods"][n][k]) for n in names]
        ax.barh(np.arange(len(names)) + j * width, means, width, label=k)
    ax.set_yticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("similarity of the maps: true-label vs permuted-label model")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    for i, n in enumerate(names):
        a, b = examples[n]
        for j, (m, title) in enumerate([(a[0], "true"), (b[0], "permuted"), (a[1], "true"),
                                        (b[1], "permuted")]):
            sub = fig.add_axes([0.56 + 0.105 * j, 0.9 - (i + 1) * 0.8 / len(names),
                                0.1, 0.8 / len(names) * 0.95])
            sub.imshow(np.abs(m), cmap="gray")
            sub.set_xticks([])
            sub.set_yticks([])
            if i == 0:
                sub.set_title(title, fontsize=7)
    return fig


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/data_randomization")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {' '.join(METHODS)}")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--epochs-permuted", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    over = {k: v for k, v in dict(methods=args.methods and tuple(args.methods),
                                   n_train=args.n_train, n_images=args.n_images,
                                   epochs_permuted=args.epochs_permuted).items()
            if v is not None}
    results = run(DataRandomizationConfig(**over), args.out, overwrite=args.overwrite,
                  log=lambda s: print(s, flush=True))
    print(table(results))
    print(f"done in {results['seconds']:.0f}s: {Path(args.out) / 'results.json'}, "
          f"{Path(args.out) / 'data_randomization.png'}")


if __name__ == "__main__":
    main()
