"""A colour data set made here, and the check that a trained model keeps its accuracy.

Nine classes, each a (shape, colour) pair: square, circle or triangle in red, green or
blue, so neither shape nor colour alone separates them. Each 32x32x3 canvas holds one
object of random size (radius 3.5 to 8 pixels) and position, its colour channel the
brightest of the three (sometimes by only 0.05), on a noisy, randomly tinted background
crossed by two strokes of random colour. Everything is a function of the seed.

    python -m experiments.colour_shapes data --out runs/colour/colour_shapes.npz
    jaxviz train --model experiments/examples/user_models_example.py:colour_resnet \\
        --data npz:runs/colour/colour_shapes.npz --out runs/colour/run --epochs 8 --batch-size 64
    python -m experiments.colour_shapes check --checkpoint runs/colour/run
    jaxviz report --checkpoint runs/colour/run --out runs/colour/report

`check` restores the checkpoint, runs the model in inference mode on the validation split
`jaxviz train` used, and compares that accuracy with the one training reported
(docs/colour_shapes.md has a run).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHAPES = ("square", "circle", "triangle")
COLOURS = ("red", "green", "blue")
CLASS_NAMES = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)  # label = 3 * shape + colour
SIZE = 32


def shape_mask(shape: str, radius: float, cy: float, cx: float, size: int = SIZE) -> np.ndarray:
    """(size, size) bool: a square of half-side `radius`, a circle of that radius, or an
    upright isosceles triangle of height and base 2 * radius, centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - cy, xx - cx
    if shape == "square":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if shape == "circle":
        return dy ** 2 + dx ** 2 <= radius ** 2
    if shape == "triangle":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= (dy + radius) / 2)
    raise ValueError(f"shape must be one of {SHAPES}; got {shape!r}")


def _segment(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """(size, size) bool: a random straight stroke about one pixel wide."""
    (y0, x0), (y1, x1) = rng.uniform(0, size, (2, 2))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    return (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2 <= 0.6


def draw(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One image of class `label` -> ((SIZE, SIZE, 3) float in [0, 1], (SIZE, SIZE) bool
    object mask): a noisy tinted background, two strokes of random colour, the object on
    top. The object's colour channel is the brightest of its three, sometimes only barely."""
    shape, colour = SHAPES[label // 3], label % 3
    img = rng.uniform(0.15, 0.55) + rng.uniform(-0.08, 0.08, 3)
    img = img + rng.normal(0.0, 0.07, (SIZE, SIZE, 3))
    for _ in range(2):
        img[_segment(rng)] = rng.uniform(0.0, 1.0, 3)
    radius = rng.uniform(3.5, 8.0)
    cy, cx = rng.uniform(radius + 1, SIZE - radius - 1, 2)
    rgb = rng.uniform(0.1, 0.5, 3)
    rgb[colour] = rng.uniform(max(0.55, rgb.max() + 0.05), 0.95)
    mask = shape_mask(shape, radius, cy, cx)
    img[mask] = rgb + rng.normal(0.0, 0.05, (int(mask.sum()), 3))
    return np.clip(img, 0.0, 1.0), mask


def make(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (9 * per_class, 32, 32, 3) uint8, y (9 * per_class,) int32), classes shuffled."""
    if per_class < 2:
        raise ValueError(f"per_class must be >= 2 (one goes to validation); got {per_class}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int32), per_class))
    x = np.stack([draw(rng, int(label))[0] for label in y])
    return np.round(x * 255).astype(np.uint8), y


def cmd_data(args) -> dict:
    from jaxviz import io  # noqa: PLC0415

    t0 = time.perf_counter()
    x, y = make(args.per_class, args.seed)
    io.save_npz(args.out, x=x, y=y, class_names=np.asarray(CLASS_NAMES))
    return {"out": str(args.out), "images": int(len(x)), "shape": list(x.shape[1:]),
            "classes": list(CLASS_NAMES), "seed": args.seed,
            "seconds": round(time.perf_counter() - t0, 2)}


def cmd_check(args) -> dict:
    """Training's last validation accuracy vs the restored model's, in inference mode."""
    import jax  # noqa: PLC0415
    from jaxviz import registry, train, user_data  # noqa: PLC0415

    t0 = time.perf_counter()
    run = Path(args.checkpoint)
    config = train.TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    source = json.loads((run / "data.json").read_text())["data"]
    built = registry.build(config.model, config.seed)
    model, _ = train.load_trained(run, model=built.model)
    probe = registry.to_probe(built, model)
    ds = user_data.load(source, built.input_shape, built.input_range, built.num_classes)
    forward = jax.jit(lambda params, x: probe(params, x))
    logits = np.concatenate([np.asarray(forward(probe.params, ds.x_val[i:i + 500]))
                             for i in range(0, len(ds.x_val), 500)])
    restored = float(np.mean(np.argmax(logits, -1) == ds.y_val))
    trained = train.CheckpointStore(run).read_metrics()[-1]
    return {"checkpoint": str(run), "epochs": trained["epoch"],
            "val_accuracy_in_training": trained["val_accuracy"],
            "val_accuracy_restored_inference": restored,
            "agree": restored == trained["val_accuracy"], "val_images": int(len(ds.y_val)),
            "seconds": round(time.perf_counter() - t0, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.colour_shapes",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="write the data set as .npz (x uint8, y, class_names)")
    p.add_argument("--out", type=Path, default=Path("runs/colour/colour_shapes.npz"))
    p.add_argument("--per-class", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("check", help="restored inference accuracy vs training's")
    p.add_argument("--checkpoint", type=Path, default=Path("runs/colour/run"))
    p.set_defaults(func=cmd_check)
    args = parser.parse_args(argv)
    result = args.func(args)
    print(json.dumps(result, indent=2))
    return 0 if result.get("agree", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
