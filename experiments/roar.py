"""ROAR (Hooker et al. 2019): remove the pixels a method ranks highest, retrain, and see how
much accuracy is left. A method that finds what the model needs leaves less.

Command:  python -m experiments.roar [--out runs/roar] [--full] [--seeds 0 1 2]
          [--methods saliency random ...] [--time-sequential]
          [--coordinator HOST:PORT --num-processes N --process-id I | --distributed]
Does:     trains a base model, ranks every training and test image's pixels by each
          method's map of the base model (the true class), replaces the top t of them by
          the training set's per-channel mean, and retrains from scratch on each modified
          training set; all retrainings of a method (fractions x seeds) are ONE vmapped
          training program (`jaxviz.train.many`), its models split over the devices (and
          processes) there are. Test accuracy is on the test set modified the same way.
Result:   OUT/methods/<method>.json as each method finishes (a rerun skips those, same
          numbers), OUT/results.json (all of it), OUT/roar.png (accuracy against the
          fraction removed, one line per method, the seeds' range shaded).
Time:     docs/roar.md (defaults on a loaded 2-core CPU: about 30 minutes with --models-at-once 1).
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
from flax import nnx

from jaxviz import attribution as A
from jaxviz import data as data_lib
from jaxviz import io, sharding
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN
from jaxviz.plot.core import STYLE, new_figure
from jaxviz.train import TrainConfig, many

METHODS = ("saliency", "integrated_gradients", "guided_backprop", "smoothgrad",
           "smoothgrad_sq", "vargrad", "grad_cam", "occlusion", "deeplift", "lrp",
           "random", "sobel")
BASELINES = ("random", "sobel")  # rankings that know nothing of the model


@dataclasses.dataclass(frozen=True)
class RoarConfig:
    """One ROAR run. Defaults: 2,000 of the bundled digits, a small CNN, 3 epochs, 3 seeds:
    sized for a 2-core CPU shared with other work (docs/roar.md)."""

    methods: tuple[str, ...] = METHODS
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "bundled"  # or "mnist" / "fashion_mnist" (IDX files: data_dir)
    data_dir: str | None = None
    n_train: int | None = 2000  # a seeded choice of n training / test images (None: all)
    n_test: int | None = None
    model: str = "small"  # "small" (SmallCNN) or "mnist_cnn" (the seed recipe's CNN)
    width: int = 8
    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 1e-2
    base_seed: int = 100  # the base model's seed (its maps rank the pixels)
    methods_per_program: int = 1  # methods trained in one program (memory permitting)
    chunk: int = 250  # images per attribution call
    ig_steps: int = 32
    noise_samples: int = 16  # SmoothGrad, SmoothGrad^2, VarGrad
    noise_sigma: float = 0.15
    occlusion_window: int = 4
    occlusion_stride: int = 2

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}; "
                             f"got {unknown or self.methods}")
        if not all(0 < f < 1 for f in self.fractions) or not self.fractions:
            raise ValueError(f"fractions must be in (0, 1); got {self.fractions}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one; got {self.seeds}")
        if self.model not in ("small", "mnist_cnn"):
            raise ValueError(f"model must be 'small' or 'mnist_cnn'; got {self.model!r}")
        if self.methods_per_program < 1:
            raise ValueError(f"methods_per_program must be >= 1; got {self.methods_per_program}")

    def train_config(self, seed: int) -> TrainConfig:
        # No augmentation: a shift would move a removed pixel off the image's own ranking.
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, shift=0, seed=seed)


# The paper's scale on MNIST: all 60,000 digits, the seed recipe's CNN, 5 retrainings.
FULL = dict(data="mnist", model="mnist_cnn", n_train=None, seeds=(0, 1, 2, 3, 4), epochs=10,
            learning_rate=3e-3, ig_steps=64, noise_samples=50)


class SmallCNN(nnx.Module):
    """conv (3x3, stride 2) -> relu -> conv (3x3, stride 2) -> relu -> dense.

    x: (N, H, W, C) float32 -> (N, num_classes) logits; H, W fixed at construction.
    """

    def __init__(self, shape=(28, 28, 1), width: int = 16, num_classes: int = 10, *,
                 rngs: nnx.Rngs):
        h, w = (-(-(-(-s // 2)) // 2) for s in shape[:2])  # two SAME stride-2 convs
        self.conv1 = nnx.Conv(shape[2], width, (3, 3), strides=(2, 2), rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = nnx.Linear(h * w * 2 * width, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
        return self.head(x.reshape(x.shape[0], -1))


def make_model(cfg: RoarConfig, shape, seed: int) -> nnx.Module:
    if cfg.model == "mnist_cnn":
        return MnistCNN(rngs=nnx.Rngs(seed))
    return SmallCNN(tuple(shape), cfg.width, rngs=nnx.Rngs(seed))


def load_data(cfg: RoarConfig):
    """(x_train, y_train, x_test, y_test): (N, H, W, C) float32 in [0, 1], (N,) int32."""
    ds = data_lib.load(cfg.data, cfg.data_dir)
    # A seeded choice, not the first n: the validation digits are sorted by class.
    tr = np.sort(np.random.default_rng(0).permutation(len(ds.y_train))[:cfg.n_train])
    te = np.sort(np.random.default_rng(1).permutation(len(ds.y_val))[:cfg.n_test])
    return (np.asarray(ds.x_train[tr], np.float32), np.asarray(ds.y_train[tr], np.int32),
            np.asarray(ds.x_val[te], np.float32), np.asarray(ds.y_val[te], np.int32))


# ---- rankings and the modified images -------------------------------------------------

def rank_pixels(scores: jax.Array, key: jax.Array) -> jax.Array:
    """Each pixel's place in its image's order of decreasing score, 0 = most important;
    exact ties in a random order (a flat map must not remove pixels top-left first).

    scores: (N, H, W) float -> (N, H, W) int32, each image a permutation of 0..H*W-1.
    """
    if not bool(jnp.all(jnp.isfinite(scores))):
        raise ValueError("scores must be finite to rank pixels; got NaN or inf")
    return _ranks(scores, key)


@jax.jit
def _ranks(scores, key):
    n, h, w = scores.shape
    flat = scores.reshape(n, h * w)
    perm = jax.vmap(lambda k: jax.random.permutation(k, h * w))(jax.random.split(key, n))
    order = jnp.argsort(-jnp.take_along_axis(flat, perm, 1), axis=1, stable=True)
    pixel = jnp.take_along_axis(perm, order, 1)  # pixel indices, most important first
    ranks = jnp.zeros_like(pixel).at[jnp.arange(n)[:, None], pixel].set(jnp.arange(h * w))
    return ranks.reshape(n, h, w)


def removed(images, ranks, k, mean):
    """images (N, H, W, C) with each image's k top-ranked pixels (ranks (N, H, W) < k) set
    to mean (C,), every channel of a pixel together."""
    return jnp.where((ranks < k)[..., None], mean, images)


def roar_view(data, variant, idx):
    """many.View for ROAR: data = (images, labels, ranks (G, N, H, W), mean (C,)),
    variant = (method index in ranks, pixels removed)."""
    images, labels, ranks, mean = data
    method, k = variant
    return removed(images[idx], ranks[method, idx], k, mean), labels[idx]


def sobel(images: jax.Array) -> jax.Array:
    """Edge magnitude summed over channels: (N, H, W, C) -> (N, H, W) (edge-padded)."""
    gx = jnp.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    x = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = images.shape[1:3]

    def filt(k):
        return sum(k[i, j] * x[:, i:i + h, j:j + w] for i in range(3) for j in range(3))

    return jnp.sqrt(filt(gx) ** 2 + filt(gx.T) ** 2).sum(-1)


def method_options(cfg: RoarConfig) -> dict:
    """name -> (registered method, options)."""
    noise = dict(n_samples=cfg.noise_samples, sigma=cfg.noise_sigma)
    win, stride = (cfg.occlusion_window,) * 2, (cfg.occlusion_stride,) * 2
    return {"saliency": ("saliency", {}), "guided_backprop": ("guided_backprop", {}),
            "integrated_gradients": ("integrated_gradients", dict(n_steps=cfg.ig_steps)),
            "smoothgrad": ("smoothgrad", noise),
            "smoothgrad_sq": ("smoothgrad", dict(noise, nt_type="smoothgrad_sq")),
            "vargrad": ("smoothgrad", dict(noise, nt_type="vargrad")),
            "grad_cam": ("grad_cam", dict(layer="conv2")),
            "occlusion": ("occlusion", dict(window=win, stride=stride)),
            "deeplift": ("deeplift", {}), "lrp": ("lrp", dict(composite="epsilon_plus"))}


def scores_of(name: str, cfg: RoarConfig, probe, params, x, y, keys) -> jax.Array:
    """One chunk's pixel importance (N, H, W): |map| summed over channels. keys: (N,)."""
    if name == "random":
        return jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:3]))(keys)
    if name == "sobel":
        return sobel(x)
    registered, options = method_options(cfg)[name]
    keyed = dict(key=keys) if A.get(registered).needs_key else {}
    m = A.attribute(registered, probe, params, x, y, **keyed, **options).map
    return jnp.abs(m).sum(-1) if m.ndim == 4 else jnp.abs(m)


def pixel_ranks(name: str, cfg: RoarConfig, probe, x, y, key, mesh) -> np.ndarray:
    """(N, H, W) int16 ranks of every image, cfg.chunk images per call; per-image keys, so
    neither the device count nor the process count changes a number."""
    local = None if mesh is None else sharding.local_mesh(mesh)
    params = probe.params if local is None else sharding.replicate(probe.params, local)
    out, (score_key, tie_key) = [], jax.random.split(key)
    for start in range(0, len(x), cfg.chunk):
        xc, yc = jnp.asarray(x[start:start + cfg.chunk]), jnp.asarray(y[start:start + cfg.chunk])
        keys = jax.random.split(jax.random.fold_in(score_key, start), len(xc))
        s = _chunk_scores(name, cfg, probe, params, (xc, yc, keys), mesh, local)
        out.append(np.asarray(rank_pixels(jnp.asarray(s), jax.random.fold_in(tie_key, start))))
    return np.concatenate(out).astype(np.int16)


def _chunk_scores(name, cfg, probe, params, args, mesh, local) -> np.ndarray:
    """scores_of on one chunk: split over this process's devices (padded to them); on a
    mesh across processes each process scores its share and all are gathered."""
    n = len(args[0])
    across = sharding.spans_processes(mesh)
    mine, n_mine = sharding.process_share(args, n) if across else (args, n)
    if local is not None:
        n_dev = local.devices.size
        pad = -(-n_mine // n_dev) * n_dev - n_mine
        mine = [jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]) for a in mine]
        mine = [sharding.shard_batch(a, local, local.axis_names[0]) for a in mine]
    s = np.asarray(scores_of(name, cfg, probe, params, *mine))[:n_mine]
    return sharding.gather_shares(s, n) if across else s


# ---- the retraining grid ------------------------------------------------------------

def grid(cfg: RoarConfig, n_methods: int, pixels: int):
    """Models in program order (method g, fraction f, seed s) -> (seeds, variants)."""
    rows = [(g, round(f * pixels), s) for g in range(n_methods) for f in cfg.fractions
            for s in cfg.seeds]
    seeds = [s for _, _, s in rows]
    variants = (jnp.asarray([g for g, _, _ in rows], jnp.int32),
                jnp.asarray([k for _, k, _ in rows], jnp.int32))
    return seeds, variants


def retrain(cfg, names, ranks_train, ranks_test, sets, mesh, *, sequential=False,
            models_at_once=None):
    """Train every (method, fraction, seed) model of `names` in one program (or one after
    another) and test each -> {"accuracy": (G, F, S), "train_loss": (G, F, S, steps),
    "seconds": of the training}."""
    x_tr, y_tr, x_te, y_te = sets
    mean = jnp.asarray(x_tr.mean((0, 1, 2)))
    seeds, variants = grid(cfg, len(names), x_tr.shape[1] * x_tr.shape[2])
    stack = many.stack_models([make_model(cfg, x_tr.shape[1:], s) for s in seeds])
    train_data = (jnp.asarray(x_tr), jnp.asarray(y_tr), jnp.asarray(ranks_train), mean)
    test_data = (jnp.asarray(x_te), jnp.asarray(y_te), jnp.asarray(ranks_test), mean)
    config = cfg.train_config(0)  # each model's seed comes from `seeds`
    t0 = time.perf_counter()
    if sequential:
        trained = many.fit_sequential(stack, config, train_data, seeds=seeds, variants=variants,
                                      view=roar_view)
    else:
        trained = many.fit_many(stack, config, train_data, seeds=seeds, variants=variants,
                                view=roar_view, mesh=mesh, models_at_once=models_at_once)
    jax.block_until_ready(trained.stack.params)
    seconds = time.perf_counter() - t0
    _, acc = many.evaluate_many(trained.stack, test_data, variants=variants, view=roar_view,
                                mesh=mesh)
    shape = (len(names), len(cfg.fractions), len(cfg.seeds))
    return dict(accuracy=acc.reshape(shape), train_loss=trained.losses.reshape(*shape, -1),
                seconds=seconds)


def train_base(cfg: RoarConfig, sets):
    """The base model (unmodified data, cfg.base_seed) as a Probe, and its test accuracy;
    every process trains the same one."""
    x_tr, y_tr, x_te, y_te = sets
    model = make_model(cfg, x_tr.shape[1:], cfg.base_seed)
    stack = many.stack_models([model])
    trained = many.fit_many(stack, cfg.train_config(cfg.base_seed), (x_tr, y_tr),
                            seeds=[cfg.base_seed])
    _, acc = many.evaluate_many(trained.stack, (x_te, y_te))
    params = jax.tree.map(lambda a: sharding.to_host(a)[0], trained.stack.params)
    rest = jax.tree.map(lambda a: sharding.to_host(a)[0], trained.stack.rest)
    base = nnx.merge(trained.stack.graphdef, params, rest)
    base.eval()
    return probe_lib.from_model(base, input_shape=tuple(x_tr.shape[1:])), float(acc[0])


# ---- the run: resumable, one file per finished method -------------------------------

def _groups(names, size):
    return [list(names[i:i + size]) for i in range(0, len(names), size)]


def _done(cfg: RoarConfig, out: Path) -> dict:
    """{method: its saved result} for the methods an earlier run of this config finished;
    process 0 reads the run directory and every process gets its answer."""
    found = {}
    for name in cfg.methods:
        path = out / "methods" / f"{name}.json"
        if jax.process_index() == 0 and path.exists():
            found[name] = json.loads(path.read_text())
    flags = np.asarray([name in found for name in cfg.methods], np.int32)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415
        flags = np.asarray(multihost_utils.broadcast_one_to_all(flags))
    return {n: found.get(n) for n, f in zip(cfg.methods, flags) if f}


def _open_run(cfg: RoarConfig, out: Path, overwrite: bool) -> None:
    """The run directory for cfg: new, or one holding a run of the same config (resumed)."""
    if jax.process_index() != 0:
        return
    path = out / "config.json"
    if path.exists() and not overwrite and json.loads(path.read_text()) != _jsonable(cfg):
        raise ValueError(f"--out {out} holds a ROAR run with another config ({path}); "
                         f"give another --out, or --overwrite to start it again")
    if overwrite and (out / "methods").exists():
        for old in (out / "methods").glob("*.json"):
            old.unlink()
    io.write_json(path, _jsonable(cfg))


def _jsonable(cfg: RoarConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _write(path: Path, obj) -> None:
    if jax.process_index() == 0:
        io.write_json(path, obj)


def _last_epoch(losses: np.ndarray, cfg: RoarConfig) -> np.ndarray:
    """(F, S, steps) per-step training losses -> (F, S) means over the last epoch's steps."""
    per_epoch = losses.shape[-1] // cfg.epochs
    return losses[..., -per_epoch:].mean(-1)


def group_ranks(cfg, names, probe, sets, key, mesh):
    """(train ranks (G, N, H, W), test ranks (G, N_test, H, W), seconds) for the group."""
    t0 = time.perf_counter()
    parts = [[pixel_ranks(n, cfg, probe, x, y, jax.random.fold_in(A.method_key(key, n), i), mesh)
              for n in names] for i, (x, y) in enumerate((sets[:2], sets[2:]))]
    return np.stack(parts[0]), np.stack(parts[1]), time.perf_counter() - t0


def run_group(cfg, names, ranks, sets, mesh, out: Path, log, models_at_once=None):
    """Retrain and test one group of methods on its ranks; each method's JSON written
    atomically as the group finishes. -> ({method: result}, retrain's dict)."""
    r_train, r_test, rank_seconds = ranks
    res = retrain(cfg, names, r_train, r_test, sets, mesh, models_at_once=models_at_once)
    acc, seconds = res["accuracy"], res["seconds"]
    results = {}
    for g, name in enumerate(names):
        results[name] = dict(method=name, fractions=list(cfg.fractions), seeds=list(cfg.seeds),
                             accuracy=acc[g].tolist(), models_in_program=int(acc.size),
                             last_epoch_train_loss=_last_epoch(res["train_loss"][g], cfg).tolist(),
                             program_seconds=seconds, ranking_seconds=rank_seconds,
                             models_at_once=models_at_once)
        _write(out / "methods" / f"{name}.json", results[name])
        log(f"[{name}] accuracy by fraction (mean over seeds): "
            + ", ".join(f"{f:.0%} {a:.4f}" for f, a in zip(cfg.fractions, acc[g].mean(-1)))
            + f"  ({acc.size} models in one program, {_at_once(models_at_once)}, {seconds:.1f}s; "
            f"ranking {rank_seconds:.1f}s)")
    return results, res


def time_sequential(cfg, names, ranks, sets, vmapped: dict, log) -> dict:
    """The group's models trained again one after another (one device), against the one
    program's run `vmapped` (retrain's dict); each time includes its one compilation."""
    seq = retrain(cfg, names, ranks[0], ranks[1], sets, None, sequential=True)
    times = dict(models=int(seq["accuracy"].size), vmapped_seconds=vmapped["seconds"],
                 sequential_seconds=seq["seconds"],
                 ratio=seq["seconds"] / vmapped["seconds"],
                 max_accuracy_difference=float(np.max(np.abs(seq["accuracy"]
                                                              - vmapped["accuracy"]))),
                 max_train_loss_difference=float(np.max(np.abs(seq["train_loss"]
                                                               - vmapped["train_loss"]))))
    log(f"[timing] {times['models']} models: one vmapped program {times['vmapped_seconds']:.1f}s, "
        f"one after another {times['sequential_seconds']:.1f}s: {times['ratio']:.2f}x; "
        f"accuracies differ by at most {times['max_accuracy_difference']:.4f}")
    return times


def _at_once(models_at_once) -> str:
    return "all vmapped" if models_at_once is None else f"vmapped {models_at_once} at a time"


def run(cfg: RoarConfig, out, *, mesh=None, models_at_once=None, overwrite: bool = False,
        sequential_timing=False, log=print) -> dict:
    """The whole experiment into out (resumed when out holds this config's finished methods).
    models_at_once: `many.fit_many`'s; it changes speed, not numbers, so it is not part of
    the config a rerun must match. -> the results dict written to out/results.json."""
    cfg.validate()
    out = Path(out)
    _open_run(cfg, out, overwrite)
    t0 = time.perf_counter()
    sets = load_data(cfg)
    log(f"[data] {len(sets[1])} train / {len(sets[3])} test images of {sets[0].shape[1:]}; "
        f"{jax.process_count()} process(es), {jax.device_count()} device(s)")
    probe, base_acc = train_base(cfg, sets)
    log(f"[base] test accuracy {base_acc:.4f}")
    key = jax.random.key(cfg.base_seed)
    done = _done(cfg, out)
    if done:
        log(f"[resume] already finished: {', '.join(done)}")
    todo = [n for n in cfg.methods if n not in done]
    timing = None
    for i, names in enumerate(_groups(todo, cfg.methods_per_program)):
        ranks = group_ranks(cfg, names, probe, sets, key, mesh)
        results, res = run_group(cfg, names, ranks, sets, mesh, out, log, models_at_once)
        done.update(results)
        if sequential_timing and i == 0:
            timing = time_sequential(cfg, names, ranks, sets, res, log)
            _write(out / "timing.json", timing)
    results = dict(config=_jsonable(cfg), base_accuracy=base_acc,
                   methods={n: done[n] for n in cfg.methods}, timing=timing,
                   processes=jax.process_count(), devices=jax.device_count(),
                   seconds=time.perf_counter() - t0)
    if jax.process_index() == 0:
        _write(out / "results.json", results)
        io.save_figure(figure(results), out / "roar.png", rc=STYLE)
    return results


# ---- the figure, the table, the command ---------------------------------------------

def figure(results: dict):
    """Test accuracy against the fraction removed: one line per method (mean over seeds,
    the seeds' min-max shaded), every line starting at the base model's accuracy."""

    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, r) in enumerate(results["methods"].items()):
        colour = _colour(name, i)
        acc = np.asarray(r["accuracy"])
        f = [0.0, *r["fractions"]]
        mean = [results["base_accuracy"], *acc.mean(-1)]
        lo = [results["base_accuracy"], *acc.min(-1)]
        hi = [results["base_accuracy"], *acc.max(-1)]
        style = "--" if name in BASELINES else "-"
        ax.plot(np.multiply(f, 100), mean, style, marker="o", ms=3, color=colour, label=name)
        ax.fill_between(np.multiply(f, 100), lo, hi, color=colour, alpha=0.15, lw=0)
    ax.set_xlabel("% of pixels removed (top-ranked by the method, replaced by the mean)")
    ax.set_ylabel("test accuracy after retraining")
    n_seeds = len(results["config"]["seeds"])
    ax.set_title(f"ROAR, {results['config']['data']} digits: mean of {n_seeds} retrainings "
                 f"per point, their range shaded\n(lower = the method found more of what the "
                 f"model needs; dashed: baselines)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    fig.tight_layout()
    return fig


def _colour(name: str, i: int):
    """The baselines in black and grey, every other method its own colour (tab10 without
    its grey, then navy)."""
    import matplotlib  # noqa: PLC0415

    palette = [matplotlib.colormaps["tab10"](j) for j in (0, 1, 2, 3, 4, 5, 6, 8, 9)] + ["navy"]
    return {"random": "black", "sobel": "0.55"}.get(name) or palette[i % len(palette)]


def table(results: dict) -> str:
    """Markdown: one row per method, mean ± std over seeds at each fraction."""
    fr = results["config"]["fractions"]
    lines = ["| method | " + " | ".join(f"{f:.0%}" for f in fr) + " |",
             "|---|" + "---|" * len(fr),
             f"| (no removal: base model) | {results['base_accuracy']:.4f} |"
             + " |" * (len(fr) - 1)]
    for name, r in results["methods"].items():
        acc = np.asarray(r["accuracy"])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(acc.mean(-1), acc.std(-1))]
        lines.append(f"| {name}{' (baseline)' if name in BASELINES else ''} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_config(args) -> RoarConfig:
    over = dict(FULL) if args.full else {}
    for name in ("methods", "seeds", "fractions"):
        if getattr(args, name) is not None:
            over[name] = tuple(getattr(args, name))
    for name in ("epochs", "n_train", "n_test", "methods_per_program", "data_dir", "data"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    return RoarConfig(**over)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/roar")
    p.add_argument("--full", action="store_true", help="the paper's scale on MNIST: 60,000 "
                   "digits (--data-dir or $JAXVIZ_DATA_DIR), the seed's CNN, 5 seeds, 10 epochs")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {' '.join(METHODS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--fractions", nargs="+", type=float, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--methods-per-program", type=int, default=None)
    p.add_argument("--data", default=None, help="bundled (default), mnist, fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--overwrite", action="store_true", help="start the run in --out again")
    p.add_argument("--models-at-once", type=int, default=None, help="train the grid's models "
                   "this many at a time inside the one program (default: all vmapped; 1 is "
                   "fastest on a CPU); numbers unchanged")
    p.add_argument("--time-sequential", action="store_true", help="also train the first "
                   "group's models again one after another and report both times")
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (with "
                   "--num-processes and --process-id): jax.distributed.initialize")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--distributed", action="store_true", help="jax.distributed.initialize() "
                   "with the cluster's own settings (SLURM, Cloud TPU, ...)")
    args = p.parse_args(argv)
    if args.coordinator or args.distributed:
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes, process_id=args.process_id)
    mesh = sharding.batch_mesh(axis="models") if jax.device_count() > 1 else None
    log = print if jax.process_index() == 0 else (lambda *a, **k: None)
    results = run(parse_config(args), args.out, mesh=mesh, models_at_once=args.models_at_once,
                  overwrite=args.overwrite,
                  sequential_timing=args.time_sequential, log=lambda s: log(s, flush=True))
    log(table(results))
    log(f"done in {results['seconds']:.0f}s: {Path(args.out) / 'results.json'}, "
        f"{Path(args.out) / 'roar.png'}")


if __name__ == "__main__":
    main()
