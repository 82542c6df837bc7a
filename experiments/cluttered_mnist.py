"""Localisation on cluttered MNIST: which attribution map points at the digit, not the clutter?

Command:  python -m experiments.cluttered_mnist [--quick] [--out DIR]
Does:     builds cluttered MNIST from the bundled digits (60x60, 8x8 crops of other digits as
          clutter), trains a small CNN on it (or reuses the checkpoint in OUT/train when its
          settings match), computes every registered attribution method on correctly
          classified held-out images, and scores each map with every localisation metric
          against the digit's own pixels (and, for the pointing game, its box too).
Result:   OUT/report.md (the method x metric table, mean and 95% bootstrap interval),
          OUT/overlays.png (maps over the ground truth), OUT/scores.json (every score);
          OUT is runs/cluttered, or runs/cluttered_quick with --quick.
Time:     see docs/cluttered_mnist.md (a 2-core CPU: minutes, most of it training and the
          sampling methods; a rerun reuses the checkpoint).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxviz import attribution as A
from jaxviz import cluttered, evaluate, io, train
from jaxviz.core import probe as probe_lib
from jaxviz.plot import STYLE
from jaxviz.plot.localisation import mask_overlay_figure

FULL = dict(train_copies=2, epochs=6, n_eval=128)
# Full runs use each method's defaults, except the sampling methods, whose defaults are set
# for 28x28 digits: on 60x60 a 6-pixel grid keeps them at ~100 features and fewer samples
# keep each to a minute or two on a 2-core CPU. --quick uses each method's quick options.
FULL_OPTIONS = {
    "feature_ablation": dict(grid=(6, 6)),
    "shapley_sampling": dict(grid=(6, 6), n_samples=10),
    "kernel_shap": dict(grid=(6, 6)),
    "lime": dict(grid=(6, 6)),
    "rise": dict(n_masks=500),
}
QUICK = dict(train_copies=1, epochs=2, n_eval=32)
BATCH = 32  # images per attribution call: bounds the memory of IG, SmoothGrad, occlusion
BASELINES = ("random", "input")  # maps that know nothing of the model: the floor to beat
N_OVERLAY = 4


def settings(args) -> dict:
    s = dict(QUICK if args.quick else FULL, seed=args.seed, n_clutter=4, clutter_size=8,
             quick=args.quick)
    if args.n_eval is not None:
        s["n_eval"] = args.n_eval
    return s


def train_config(s: dict) -> train.TrainConfig:
    return train.TrainConfig(model="jaxviz.cluttered:cluttered_cnn", epochs=s["epochs"],
                             batch_size=128, learning_rate=5e-3, seed=s["seed"])


def load_or_train(sets, s: dict, out: Path):
    """The checkpoint in out when it was trained with these settings, else a new training.
    -> (model, training seconds or None when reused, validation accuracy)."""
    config, data_settings = train_config(s), {k: s[k] for k in ("seed", "train_copies",
                                                                  "n_clutter", "clutter_size")}
    store = train.CheckpointStore(out)
    same = (store.ckpt_dir.exists() and store.latest() == config.epochs
            and store.read_config() == config.to_dict()
            and (out / "data.json").exists()
            and json.loads((out / "data.json").read_text()) == data_settings)
    if same:
        print(f"[train] reusing the checkpoint in {out} (same settings)", flush=True)
        model, _ = train.load_trained(out, model=cluttered.cluttered_cnn(s["seed"]))
        return model, None, store.read_metrics()[-1]["val_accuracy"]
    t0 = time.perf_counter()
    log = (lambda m: print(f"  epoch {m['epoch']}/{config.epochs}: val accuracy "
                           f"{m['val_accuracy']:.4f} ({m['seconds']:.1f}s)", flush=True))
    res = train.fit(config, sets, out, model=cluttered.cluttered_cnn(s["seed"]), overwrite=True,
                    quiet=True, log=log)
    io.write_json(out / "data.json", data_settings)
    return res.model, time.perf_counter() - t0, res.metrics[-1]["val_accuracy"]


def correct_images(probe, val, n: int, seed: int) -> np.ndarray:
    """Indices of n validation images the model classifies correctly, in a seeded random
    order (the validation set is sorted by class), sorted."""
    pred = np.concatenate([np.asarray(probe(probe.params, val.images[i:i + 500])).argmax(-1)
                           for i in range(0, len(val.images), 500)])
    order = np.random.default_rng(seed).permutation(len(val.labels))
    return np.sort(order[pred[order] == val.labels[order]][:n])


def attribution_maps(probe, x, y, key, quick: bool) -> tuple[dict, dict]:
    """{method: (N, H, W) display map} for every registered method, and seconds per method."""
    maps, seconds = {}, {}
    for i, name in enumerate(A.METHODS):
        method = A.get(name)
        options = dict(method.quick) if quick else dict(FULL_OPTIONS.get(name, {}))
        t0, parts = time.perf_counter(), []
        for start in range(0, len(x), BATCH):
            k = jax.random.fold_in(jax.random.fold_in(key, i), start) if method.needs_key else None
            res = method(probe, probe.params, x[start:start + BATCH], y[start:start + BATCH],
                         key=k, **options)
            parts.append(np.asarray(A.display_map(method, res)))
        maps[name] = np.concatenate(parts)
        seconds[name] = time.perf_counter() - t0
        print(f"  {name}: {seconds[name]:.1f}s", flush=True)
    return maps, seconds


def baseline_maps(x, key) -> dict:
    """"random": uniform noise (chance level); "input": the image itself (bright = relevant,
    which favours clutter as much as the digit)."""
    return {"random": np.asarray(jax.random.uniform(key, x.shape[:3])), "input": x[..., 0]}


def score_all(maps: dict, x, y, masks, boxes) -> dict:
    """{map name: {column: (N,) scores}}: every localisation metric against the digit's
    pixels, and the pointing game against its box."""
    metrics = [m for m in evaluate.METRICS.values() if m.family == "localisation"]
    out = {}
    for name, m in maps.items():
        cols = {metric.name: np.asarray(metric.fn(None, None, x, y, m, masks=masks,
                                                  **metric.defaults).scores)
                for metric in metrics}
        cols["pointing_game (box)"] = np.asarray(evaluate.get("pointing_game").fn(
            None, None, x, y, m, masks=boxes).scores)
        out[name] = cols
    return out


def bootstrap_ci(v: np.ndarray, key) -> tuple[float, float, float]:
    """(mean, low, high) of the finite scores: evaluate.bootstrap's 95% interval; NaN (a
    map with no relevance, for relevance mass) is left out and counted in the table."""
    v = v[np.isfinite(v)]
    return (float("nan"),) * 3 if v.size == 0 else evaluate.bootstrap(v, key)


def table(scores: dict) -> list[list[str]]:
    cols = list(next(iter(scores.values())))
    head = ["method"] + [f"{c} {evaluate.get(c.split(' ')[0]).arrow}" for c in cols]
    rows = [head]
    for i, (name, by_col) in enumerate(scores.items()):
        cells = []
        for j, c in enumerate(cols):
            mean, lo, hi = bootstrap_ci(by_col[c], jax.random.key(1000 * i + j))
            undefined = int((~np.isfinite(by_col[c])).sum())
            nan = f" ({undefined} NaN)" if undefined else ""
            cells.append(f"{mean:.3f} [{lo:.3f}, {hi:.3f}]{nan}")
        rows.append([name + (" (baseline)" if name in BASELINES else "")] + cells)
    return rows


def markdown(rows) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def write_report(out: Path, s: dict, facts: dict, rows, overlay_png: str) -> Path:
    options = "each method's quick options" if s["quick"] else (
        "each method's defaults, except " + "; ".join(
            f"{k}: " + ", ".join(f"{o}={v}" for o, v in opts.items())
            for k, opts in FULL_OPTIONS.items() if k in A.METHODS))
    trained = ("" if facts["train_seconds"] is None
               else f" (trained in {facts['train_seconds']:.0f}s)")
    lines = [
        "# Localisation on cluttered MNIST", "",
        f"Command: `python -m experiments.cluttered_mnist{' --quick' if s['quick'] else ''} "
        f"--out {out}`", "",
        f"Data: bundled digits on a 60x60 canvas with {s['n_clutter']} crops of "
        f"{s['clutter_size']}x{s['clutter_size']} from other digits; {facts['n_train']} "
        f"training images ({s['train_copies']} per digit), seed {s['seed']}. Model: "
        f"ClutteredCNN, {s['epochs']} epochs, validation accuracy "
        f"{facts['val_accuracy']:.4f}{trained}.",
        "",
        f"Scored: {facts['n_eval']} correctly classified validation images (a seeded random "
        f"choice, {facts['per_class']} per class), each map "
        f"explaining the true class; ground truth = the digit's pixels (mean mask "
        f"{facts['mask_pixels']:.0f} of 3600 pixels), or its tight box for 'pointing_game "
        f"(box)'. Maps are each method's display map (channels reduced as in the comparison "
        f"figure), with {options}. Cells: mean "
        f"[95% bootstrap interval]. Baselines: a uniform random map (chance) and the input "
        f"image itself (bright pixels, digit and clutter alike).", "",
        markdown(rows), "",
        f"![maps over the ground truth]({overlay_png})", "",
        "Seconds per method (all scored images): " + ", ".join(
            f"{k} {v:.1f}" for k, v in facts["method_seconds"].items()) + ".", "",
        f"Total {facts['total_seconds']:.0f}s.", ""]
    return io.write_text(out / "report.md", "\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default: runs/cluttered, or "
                        "runs/cluttered_quick with --quick (so neither replaces the other's "
                        "checkpoint)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small run: 1 copy, 2 epochs, 32 "
                        "images, each method's quick options")
    parser.add_argument("--n-eval", type=int, default=None, help="images to score")
    args = parser.parse_args(argv)
    out = Path(args.out or ("runs/cluttered_quick" if args.quick else "runs/cluttered"))
    s, t_start = settings(args), time.perf_counter()
    io.ensure_dir(out, "--out")
    sets = cluttered.load(s["seed"], train_copies=s["train_copies"], n_clutter=s["n_clutter"],
                          clutter_size=s["clutter_size"])
    print(f"[data] {len(sets.x_train)} train / {len(sets.x_val)} validation images", flush=True)
    model, train_seconds, val_acc = load_or_train(sets, s, out / "train")
    probe = probe_lib.from_model(model)
    idx = correct_images(probe, sets.val, s["n_eval"], s["seed"])
    x, y = sets.val.images[idx], sets.val.labels[idx]
    masks, boxes = sets.val.masks[idx], cluttered.box_masks(sets.val.boxes[idx], 60)
    key = jax.random.key(s["seed"])
    print(f"[attribution] {len(idx)} images", flush=True)
    maps, seconds = attribution_maps(probe, x, y, jax.random.fold_in(key, 1), args.quick)
    maps |= baseline_maps(x, jax.random.fold_in(key, 2))
    scores = score_all(maps, x, y, masks, boxes)
    rows = table(scores)
    print(markdown(rows), flush=True)
    ex = np.unique(y, return_index=True)[1][:N_OVERLAY]  # one image of each of the first classes
    shown = {A.get(n).label.replace("\n", " ") if n in A.METHODS else n: m[ex]
             for n, m in maps.items() if n != "random"}
    fig = mask_overlay_figure(x[ex], masks[ex], shown, labels=y[ex])
    io.save_figure(fig, out / "overlays.png", rc=STYLE)
    io.write_json(out / "scores.json", {"settings": s, "indices": idx, "scores": scores})
    facts = dict(n_train=len(sets.x_train), val_accuracy=val_acc, train_seconds=train_seconds,
                 n_eval=len(idx), per_class=f"{np.bincount(y).min()}-{np.bincount(y).max()}",
                 mask_pixels=float(masks.sum((1, 2)).mean()),
                 method_seconds=seconds, total_seconds=time.perf_counter() - t_start)
    path = write_report(out, s, facts, rows, "overlays.png")
    print(f"done in {facts['total_seconds']:.0f}s: {path}", flush=True)


if __name__ == "__main__":
    main()
