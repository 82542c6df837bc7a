"""DeepLIFT's MNIST experiment (Shrikumar et al. 2017, section 4.1): turn an 8 into a 3 (or
a 6) by erasing the pixels a method says speak for the 8 against the other class, and see
how far the model's log-odds between the two classes move.

Command:  python -m experiments.deeplift_mnist [--out runs/deeplift_mnist] [--full]
          [--methods gradient deeplift_rescale ...] [--overwrite]
Does:     trains (or reuses, from OUT/model) a small CNN on the bundled digits with
          `jaxviz.train.fit`; for each test 8 the model classifies as an 8 and each method,
          the pixel scores S_8 - S_t (t = 3, 6), pixels ranked by that difference, the top
          k with a positive difference erased (set to 0, the reference) for k up to 157
          (20% of 784); the change is the drop of log p(8) - log p(t) = logit_8 - logit_t.
Result:   OUT/methods/<method>.json as each method finishes (a rerun reuses them),
          OUT/results.json, OUT/deeplift_mnist.png (mean drop against pixels erased, one
          panel per target class, and the drop at 157 pixels per image as box plots).
Time:     docs/deeplift_mnist.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxviz import attribution as A
from jaxviz import data as data_lib
from jaxviz import io
from jaxviz.core import analysis
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN
from jaxviz.plot.core import STYLE, new_figure
from jaxviz.train import TrainConfig, fit, load_trained

from experiments.roar import SmallCNN

# The paper's methods, then two it did not run (LRP, occlusion) and a random ranking.
METHODS = ("gradient", "gradient_x_input", "guided_backprop_x_input", "integrated_gradients",
           "deeplift_rescale", "deeplift_reveal_cancel", "lrp", "occlusion", "random")


@dataclasses.dataclass(frozen=True)
class DeepLiftConfig:
    """Defaults: all 4,000 bundled training digits, a small CNN, 4 epochs (a minute or two
    on a 2-core CPU); `FULL` is the paper's scale (60,000 MNIST digits)."""

    methods: tuple[str, ...] = METHODS
    source: int = 8
    targets: tuple[int, ...] = (3, 6)
    max_pixels: int = 157  # 20% of 28 x 28, the paper's
    pixel_step: int = 10  # the curve is sampled every pixel_step pixels (and at max_pixels)
    n_images: int | None = None  # the first n test images of `source` it classifies right
    only_correct: bool = True  # False: every test image of `source` (a barely trained model)
    data: str = "bundled"
    data_dir: str | None = None
    n_train: int | None = None  # the first n training digits (None: all)
    model: str = "small"  # "small" (experiments.roar.SmallCNN) or "mnist_cnn"
    width: int = 16
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-2
    seed: int = 0
    ig_steps: int = 10  # the paper: IG with 5 and 10 steps
    occlusion_window: int = 4
    occlusion_stride: int = 2

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}; got "
                             f"{unknown or self.methods}")
        if self.source in self.targets or not self.targets:
            raise ValueError(f"targets must be classes other than source={self.source}; "
                             f"got {self.targets}")
        if self.model not in ("small", "mnist_cnn"):
            raise ValueError(f"model must be 'small' or 'mnist_cnn'; got {self.model!r}")
        if self.max_pixels < 1 or self.pixel_step < 1:
            raise ValueError(f"max_pixels and pixel_step must be >= 1; got "
                             f"{self.max_pixels}, {self.pixel_step}")

    def counts(self) -> tuple[int, ...]:
        """Pixels erased at each point of the curve: 0, step, 2 step, ..., max_pixels."""
        return tuple(sorted({*range(0, self.max_pixels, self.pixel_step), self.max_pixels}))


FULL = dict(data="mnist", model="mnist_cnn", epochs=10, learning_rate=3e-3)


def load_data(cfg: DeepLiftConfig) -> data_lib.Dataset:
    ds = data_lib.load(cfg.data, cfg.data_dir)
    n = len(ds.y_train) if cfg.n_train is None else cfg.n_train
    return ds._replace(x_train=ds.x_train[:n], y_train=ds.y_train[:n])


def _new_model(cfg: DeepLiftConfig, shape) -> nnx.Module:
    if cfg.model == "mnist_cnn":
        return MnistCNN(rngs=nnx.Rngs(cfg.seed))
    return SmallCNN(tuple(shape), cfg.width, rngs=nnx.Rngs(cfg.seed))


def trained_model(cfg: DeepLiftConfig, ds, run_dir: Path, log=print):
    """(the model, whether it was trained now): run_dir's checkpoint when it has one."""
    shape = ds.x_train.shape[1:]
    try:
        model, _ = load_trained(run_dir, model=_new_model(cfg, shape))
        log(f"[model] reused the checkpoint in {run_dir}")
        return model, False
    except FileNotFoundError:
        pass
    config = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size,
                         learning_rate=cfg.learning_rate, shift=0, seed=cfg.seed)
    res = fit(config, ds, run_dir, model=_new_model(cfg, shape), quiet=True, overwrite=True)
    log(f"[model] trained: validation accuracy {res.metrics[-1]['val_accuracy']:.4f}")
    return res.model, True


def chosen_images(cfg: DeepLiftConfig, probe, ds) -> np.ndarray:
    """Indices into the test set: images of `source` the model classifies as `source`
    (all of them with only_correct=False)."""
    idx = np.flatnonzero(ds.y_val == cfg.source)
    pred = np.asarray(jnp.argmax(probe(probe.params, jnp.asarray(ds.x_val[idx])), -1))
    idx = idx[pred == cfg.source] if cfg.only_correct else idx
    if not len(idx):
        raise ValueError(f"the model classifies none of the {int((ds.y_val == cfg.source).sum())}"
                         f" test {cfg.source}s as {cfg.source}: train it longer (epochs)")
    return idx if cfg.n_images is None else idx[:cfg.n_images]


def class_scores(name: str, cfg: DeepLiftConfig, probe, x, cls: int, key) -> jax.Array:
    """One method's pixel scores for class `cls`: (N, H, W, C) -> (N, H, W) (summed over
    channels). Every method here is linear in the output it explains, so S_8 - S_t is the
    map of logit_8 - logit_t, the paper's difference of two maps."""
    t = jnp.full((x.shape[0],), cls, jnp.int32)
    if name == "random":  # the same draw for every class: the difference is a fresh ranking
        return jax.random.uniform(jax.random.fold_in(key, cls), x.shape[:3])
    registered, options, times_input = {
        "gradient": ("saliency", dict(abs=False), False),
        "gradient_x_input": ("gradient_x_input", {}, False),
        "guided_backprop_x_input": ("guided_backprop", {}, True),
        "integrated_gradients": ("integrated_gradients", dict(n_steps=cfg.ig_steps,
                                                              baselines="zeros"), False),
        "deeplift_rescale": ("deeplift", dict(rule="rescale", baselines="zeros"), False),
        "deeplift_reveal_cancel": ("deeplift", dict(rule="reveal_cancel", baselines="zeros"),
                                   False),
        "lrp": ("lrp", dict(composite="epsilon_plus"), False),
        "occlusion": ("occlusion", dict(window=(cfg.occlusion_window,) * 2,
                                        stride=(cfg.occlusion_stride,) * 2), False),
    }[name]
    m = A.attribute(registered, probe, probe.params, x, t, **options).map
    m = m * x if times_input else m
    return m.sum(-1) if m.ndim == 4 else m


@functools.partial(jax.jit, static_argnames=("fn", "counts", "source", "target"))
def log_odds_drop(fn, params, x, diff, *, counts, source, target):
    """The paper's measure. x: (N, H, W, C), diff: (N, H, W) scores S_source - S_target ->
    (N, K) drop of logit_source - logit_target when the top counts[k] pixels by diff (those
    with diff > 0 only) are set to 0, K = len(counts); 0 erased pixels gives 0."""
    n, h, w, _ = x.shape
    flat = diff.reshape(n, h * w)
    order = jnp.argsort(-flat, axis=1, stable=True)
    rank = jnp.zeros_like(order).at[jnp.arange(n)[:, None], order].set(jnp.arange(h * w))
    rank = rank.reshape(n, h, w)

    def log_odds(imgs):
        z = fn(params, imgs)
        return z[:, source] - z[:, target]

    def at(k):
        erase = (rank < k) & (diff > 0)
        return log_odds(jnp.where(erase[..., None], 0.0, x))

    return log_odds(x)[:, None] - jax.lax.map(at, jnp.asarray(counts)).T



def per_method(names, out: Path, compute, summary, log) -> dict:
    """{name: result} for each method: read back from out/methods/NAME.json when an earlier
    run wrote it, else compute(name), written atomically as soon as it is done, so an
    interrupted run resumes where it stopped. summary(result) -> the line logged."""
    methods = {}
    for name in names:
        path = out / "methods" / f"{name}.json"
        if path.exists():
            methods[name] = json.loads(path.read_text())
            log(f"[{name}] reused {path}")
            continue
        methods[name] = compute(name)
        io.write_json(path, methods[name])
        log(f"[{name}] {summary(methods[name])}")
    return methods

def run_method(name: str, cfg: DeepLiftConfig, probe, x, key) -> dict:
    """{"drop": {target: (N, K) list}, "seconds"} for one method."""
    t0 = time.perf_counter()
    key = A.method_key(key, name)
    s_src = class_scores(name, cfg, probe, x, cfg.source, key)
    drops, erased = {}, {}
    for t in cfg.targets:
        diff = s_src - class_scores(name, cfg, probe, x, t, key)
        d = log_odds_drop(analysis.static_fn(probe), probe.params, x, diff, counts=cfg.counts(),
                          source=cfg.source, target=t)
        drops[str(t)] = np.asarray(d).tolist()
        erased[str(t)] = np.minimum(np.asarray((diff > 0).sum((1, 2))),
                                    cfg.max_pixels).tolist()
    return dict(method=name, counts=list(cfg.counts()), drop=drops,
                pixels_with_positive_difference=erased, seconds=time.perf_counter() - t0)


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _open_run(cfg: DeepLiftConfig, out: Path, overwrite: bool) -> None:
    path = out / "config.json"
    if path.exists() and not overwrite and json.loads(path.read_text()) != _jsonable(cfg):
        raise ValueError(f"--out {out} holds a run with another config ({path}); give "
                         f"another --out, or --overwrite to start it again")
    if overwrite:
        for old in (out / "methods").glob("*.json"):
            old.unlink()
    io.write_json(path, _jsonable(cfg))


def run(cfg: DeepLiftConfig, out, *, overwrite: bool = False, log=print) -> dict:
    """The whole experiment into out (resumed: finished methods and the trained model are
    reused). -> the results dict written to out/results.json."""
    cfg.validate()
    out = Path(out)
    _open_run(cfg, out, overwrite)
    t0 = time.perf_counter()
    ds = load_data(cfg)
    if overwrite and (out / "model").exists():
        import shutil  # noqa: PLC0415
        shutil.rmtree(out / "model")
    model, trained = trained_model(cfg, ds, out / "model", log)
    probe = probe_lib.from_model(model, input_shape=tuple(ds.x_train.shape[1:]))
    idx = chosen_images(cfg, probe, ds)
    x = jnp.asarray(ds.x_val[idx])
    right = " classified right" if cfg.only_correct else ""
    log(f"[data] {len(idx)} test {cfg.source}s{right}")
    key = jax.random.key(cfg.seed)

    def summary(r):
        return (f"mean log-odds drop at {cfg.max_pixels} pixels: " + ", ".join(
            f"{cfg.source}->{t} {np.mean(np.asarray(d)[:, -1]):.3f}"
            for t, d in r["drop"].items()) + f" ({r['seconds']:.1f}s)")
    methods = per_method(cfg.methods, out, lambda n: run_method(n, cfg, probe, x, key),
                         summary, log)
    acc = float(np.mean(np.asarray(jnp.argmax(probe(probe.params, jnp.asarray(ds.x_val)), -1))
                        == ds.y_val))
    results = dict(config=_jsonable(cfg), test_accuracy=acc, images=idx.tolist(),
                   trained_now=trained, methods=methods, seconds=time.perf_counter() - t0)
    io.write_json(out / "results.json", results)
    io.save_figure(figure(results), out / "deeplift_mnist.png", rc=STYLE)
    return results


def summary(results: dict) -> list[dict]:
    """One row per method: mean and standard error of the drop at max_pixels per target."""
    rows = []
    for name, r in results["methods"].items():
        row = dict(method=name)
        for t, d in r["drop"].items():
            last = np.asarray(d)[:, -1]
            row[t] = (float(last.mean()), float(last.std(ddof=1) / np.sqrt(len(last)))
                      if len(last) > 1 else 0.0)
        rows.append(row)
    return rows


def table(results: dict) -> str:
    """Markdown: methods ranked by the mean drop at max_pixels for the first target."""
    cfg = results["config"]
    ts = [str(t) for t in cfg["targets"]]
    rows = sorted(summary(results), key=lambda r: -r[ts[0]][0])
    lines = ["| method | " + " | ".join(f"{cfg['source']}→{t}: drop ± s.e." for t in ts) + " |",
             "|---|" + "---|" * len(ts)]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(f"{r[t][0]:.2f} ± {r[t][1]:.2f}"
                                                        for t in ts) + " |")
    return "\n".join(lines)


def figure(results: dict):
    """Top: mean log-odds drop against pixels erased, one panel per target class; bottom:
    the drop at max_pixels per image as box plots (the paper's Figure 5B)."""
    import matplotlib  # noqa: PLC0415

    cfg, names = results["config"], list(results["methods"])
    ts = [str(t) for t in cfg["targets"]]
    fig = new_figure(4.2 * len(ts), 6.4)
    colours = {n: matplotlib.colormaps["tab10"](i % 10) for i, n in enumerate(names)}
    colours["random"] = "black"
    for j, t in enumerate(ts):
        ax = fig.add_subplot(2, len(ts), j + 1)
        for n in names:
            d = np.asarray(results["methods"][n]["drop"][t])
            ax.plot(results["methods"][n]["counts"], d.mean(0), "--" if n == "random" else "-",
                    color=colours[n], label=n, lw=1.2)
        ax.set_title(f"{cfg['source']} → {t}: mean over {d.shape[0]} images")
        ax.set_xlabel("pixels erased")
        ax.set_ylabel(f"drop of logit {cfg['source']} − logit {t}")
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize=6)
        bx = fig.add_subplot(2, len(ts), len(ts) + j + 1)
        bx.boxplot([np.asarray(results["methods"][n]["drop"][t])[:, -1] for n in names],
                   showfliers=False)
        bx.set_xticks(range(1, len(names) + 1), [n.replace("_", "\n") for n in names],
                      fontsize=5)
        bx.set_ylabel(f"drop at {cfg['max_pixels']} pixels")
        bx.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def parse_config(args) -> DeepLiftConfig:
    over = dict(FULL) if args.full else {}
    if args.methods is not None:
        over["methods"] = tuple(args.methods)
    for name in ("epochs", "n_images", "n_train", "data", "data_dir"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    return DeepLiftConfig(**over)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/deeplift_mnist")
    p.add_argument("--full", action="store_true", help="60,000 MNIST digits (--data-dir or "
                   "$JAXVIZ_DATA_DIR), the seed's CNN, 10 epochs")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {' '.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    results = run(parse_config(args), args.out, overwrite=args.overwrite,
                  log=lambda s: print(s, flush=True))
    print(f"test accuracy {results['test_accuracy']:.4f}")
    print(table(results))
    print(f"done in {results['seconds']:.0f}s: {Path(args.out) / 'results.json'}, "
          f"{Path(args.out) / 'deeplift_mnist.png'}")


if __name__ == "__main__":
    main()
