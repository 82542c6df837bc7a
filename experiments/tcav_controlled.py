"""TCAV against a known answer: a colour cue whose reliability q is set by construction.

Three classes by shape (square, circle, triangle); each object is drawn in one of three
colours. With probability q the colour is its class's cue colour (square: red, circle:
green, triangle: blue), otherwise one of the other two, uniformly. So P(cue | class) = q,
and at q = 1/3 (chance) colour says nothing about the class; the shape always decides it.
One small CNN is trained (jaxviz.train) per q; then TCAV of class "square" at `conv2` and
`conv3` for three concepts:

    red      red objects of every shape (redness, with shape balanced)
    square   squares of every colour (the class's own shape, with colour balanced)
    random   a set drawn like the random pool (the paper's check: must never pass)

The random pool is images of the data distribution at chance (any shape, any colour).
The model's actual reliance on the cue, the ground truth TCAV should follow, is measured
without TCAV: validation accuracy on images whose colour agrees with the class cue minus
that on images whose colour conflicts with it (cue_gap; 0: the cue is not used), and the
square logit's mean drop when a red square is recoloured green or blue (cue_logit_gap).
Significance two ways: the paper's t-test (concept runs vs random-concept runs) and the
"random_sets" test (the concept's mean vs the means of n_random_sets fixed random sets,
each run like a concept). Each q also tests `n_null_sets` more fixed random sets, counting
how many each test calls significant (both should call none).

    python -m experiments.tcav_controlled --out runs/tcav_controlled   # ~5 min on 2 cores
    python -m experiments.tcav_controlled --quick --out /tmp/tcav_q    # the test's scale

Writes result.json (per q: accuracies, cue_gap, the TCAV table with per-run scores) and
tcav_controlled_<layer>.png (TCAV score against q, significant ones marked) to --out.
docs/tcav.md has a run.
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

from experiments.colour_shapes import shape_mask

SHAPES = ("square", "circle", "triangle")
COLOURS = ("red", "green", "blue")
CHANCE = 1 / 3
TARGET = 0  # class "square"; its cue colour is red


@dataclasses.dataclass(frozen=True)
class Settings:
    size: int = 24
    per_class: int = 600       # training images per class (a fifth more for validation)
    epochs: int = 10
    batch_size: int = 64
    channels: tuple = (16, 32, 32)
    layers: tuple = ("conv2", "conv3")
    n_concept: int = 60        # images per concept set
    n_pool: int = 1000         # random pool
    n_class_images: int = 100  # class images whose gradients are scored
    n_runs: int = 20
    cav_steps: int = 300
    qs: tuple = (CHANCE, 0.5, 0.9, 1.0)
    n_random_sets: int = 10    # the "random_sets" test's reference sets
    n_null_sets: int = 10      # extra random sets: how often each test calls one significant
    seed: int = 0


QUICK = Settings(size=12, per_class=150, epochs=8, channels=(8, 16, 16), n_concept=24,
                 n_pool=160, n_class_images=40, n_runs=10, cav_steps=100, qs=(CHANCE, 1.0),
                 layers=("conv2",), n_random_sets=5, n_null_sets=0)


def draw(rng: np.random.Generator, shape: int, colour: int | None, size: int) -> np.ndarray:
    """One (size, size, 3) float image in [0, 1]: a noisy grey background and the object,
    its colour channel `colour` bright and the others dark (None: any RGB colour)."""
    img = rng.uniform(0.3, 0.6) + rng.normal(0.0, 0.06, (size, size, 3))
    radius = rng.uniform(0.18, 0.32) * size
    cy, cx = rng.uniform(radius + 0.5, size - radius - 0.5, 2)
    rgb = rng.uniform(0.0, 1.0, 3)
    if colour is not None:
        rgb = rng.uniform(0.0, 0.25, 3)
        rgb[colour] = rng.uniform(0.7, 1.0)
    mask = shape_mask(SHAPES[shape], radius, cy, cx, size)
    img[mask] = rgb + rng.normal(0.0, 0.04, (int(mask.sum()), 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def cue_colour(rng: np.random.Generator, label: int, q: float) -> int:
    """The class's cue colour with probability q, else one of the other two, uniformly."""
    if rng.uniform() < q:
        return label
    return int(rng.choice([c for c in range(3) if c != label]))


def make_data(q: float, n: int, size: int, seed: int):
    """(x (n, size, size, 3) float32, y (n,) int32, cue (n,) bool: colour == class cue)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    colours = np.array([cue_colour(rng, int(label), q) for label in y])
    x = np.stack([draw(rng, int(s), int(c), size) for s, c in zip(y, colours)])
    return x, y, colours == y


def random_images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3): any shape in any of the three colours, uniformly (the random
    pool and the random sets: the data at chance, so a concept set differs from them only
    in what it is about, not in contrast or palette)."""
    rng = np.random.default_rng(seed)
    return np.stack([draw(rng, *(int(v) for v in rng.integers(0, 3, 2)), size)
                     for _ in range(n)])


def concept_sets(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """The concepts tested: red objects of every shape, squares of every colour, and a
    random set drawn like the pool."""
    rng = np.random.default_rng(seed)
    return {"red": np.stack([draw(rng, i % 3, 0, size) for i in range(n)]),
            "square": np.stack([draw(rng, 0, i % 3, size) for i in range(n)]),
            "random": random_images(n, size, seed + 1)}


class SmallCNN(nnx.Module):
    """conv-relu-pool twice, conv-relu, global max, dense. x: (N, H, W, 3) -> (N, 3).
    (With a global mean and two convs the shapes were not learnt at chance in 20 epochs.)"""

    def __init__(self, channels=(16, 32, 32), *, rngs: nnx.Rngs):
        c1, c2, c3 = channels
        self.conv1 = nnx.Conv(3, c1, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(c1, c2, (3, 3), rngs=rngs)
        self.conv3 = nnx.Conv(c2, c3, (3, 3), rngs=rngs)
        self.head = nnx.Linear(c3, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.head(nnx.relu(self.conv3(x)).max(axis=(1, 2)))


def train_model(q: float, s: Settings):
    """A SmallCNN trained on data with cue reliability q -> (probe, accuracies)."""
    from jaxviz import train  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    from jaxviz.data import Dataset  # noqa: PLC0415

    n_val = max(s.per_class * 3 // 5, 30)
    x, y, _ = make_data(q, 3 * s.per_class, s.size, s.seed + 1)
    xv, yv, cue = make_data(q, n_val, s.size, s.seed + 2)
    # conflict images: the same classes with a colour that is never the cue
    xc, yc, _ = make_data(0.0, n_val, s.size, s.seed + 3)
    config = train.TrainConfig(model="tcav_controlled", epochs=s.epochs,
                               batch_size=s.batch_size, learning_rate=3e-3, shift=1,
                               seed=s.seed)
    model = SmallCNN(s.channels, rngs=nnx.Rngs(s.seed))
    fit = train.fit(config, Dataset(x, y, xv, yv, f"q={q:.2f}"), model=model, quiet=True,
                    recalibrate=False)
    probe = probe_lib.from_model(fit.model, input_shape=(s.size, s.size, 3),
                                 input_range=(0.0, 1.0))
    pred = lambda xs: np.asarray(jnp.argmax(probe(probe.params, jnp.asarray(xs)), -1))  # noqa: E731
    acc_val = pred(xv) == yv
    acc_agree = float(acc_val[cue].mean()) if cue.any() else float("nan")
    acc_conflict = float((pred(xc) == yc).mean())
    return probe, {"val_accuracy": float(acc_val.mean()), "acc_cue_agrees": acc_agree,
                   "acc_cue_conflicts": acc_conflict, "cue_gap": acc_agree - acc_conflict,
                   "cue_logit_gap": cue_logit_gap(probe, s)}


def cue_logit_gap(probe, s: Settings, n: int = 100) -> float:
    """Mean over n squares of logit_square(red) - logit_square(green or blue), each pair the
    same image (the same random draws) but for the object's colour."""
    def squares(colour_of):
        return np.stack([draw(np.random.default_rng([s.seed, 7, i]), TARGET, colour_of(i),
                              s.size) for i in range(n)])
    logit = lambda xs: np.asarray(probe(probe.params, jnp.asarray(xs)))[:, TARGET]  # noqa: E731
    return float((logit(squares(lambda i: 0)) - logit(squares(lambda i: 1 + i % 2))).mean())


def run_q(q: float, s: Settings) -> dict:
    """Train at q, then TCAV of class "square" for the three concepts -> one result row."""
    from jaxviz import concepts  # noqa: PLC0415

    t0 = time.perf_counter()
    probe, accs = train_model(q, s)
    rng = np.random.default_rng(s.seed + 4)
    x_class = np.stack([draw(rng, TARGET, cue_colour(rng, TARGET, q), s.size)
                        for _ in range(s.n_class_images)])
    pool = random_images(s.n_pool, s.size, s.seed + 5)
    sets = concept_sets(s.n_concept, s.size, s.seed + 6)
    results = {layer: concepts.tcav(probe, probe.params, x_class, TARGET, sets, pool,
                                    layer=layer, key=jax.random.key(s.seed), n_runs=s.n_runs,
                                    steps=s.cav_steps, n_random_sets=s.n_random_sets)
               for layer in s.layers}
    tables = {}
    for layer, r in results.items():
        tables[layer] = r.to_json()
        if not r.random_set_scores.size:
            continue
        p, adj, sig = concepts.significance(r.scores, r.random_set_scores.mean(1), r.alpha,
                                            "random_sets")
        for row, pa, si in zip(tables[layer]["table"], adj, sig):
            row.update(p_sets_bonferroni=float(pa), significant_sets=bool(si))
    null = {layer: null_rate(probe, x_class, pool, layer, s) for layer in s.layers}
    return {"q": q, **accs, "tcav": tables, "null_sets": null,
            "seconds": time.perf_counter() - t0, "_results": results}


def null_rate(probe, x_class, pool, layer: str, s: Settings) -> dict | None:
    """n_null_sets fixed random sets (drawn like the pool) tested together: how many each
    test calls significant, before and after Bonferroni over them."""
    from jaxviz import concepts  # noqa: PLC0415

    if not s.n_null_sets:
        return None
    sets = {f"random{i}": random_images(s.n_concept, s.size, 1000 + i)
            for i in range(s.n_null_sets)}
    r = concepts.tcav(probe, probe.params, x_class, TARGET, sets, pool, layer=layer,
                      key=jax.random.key(s.seed + 1), n_runs=s.n_runs, steps=s.cav_steps,
                      n_random_sets=s.n_random_sets)
    out = {"sets": s.n_null_sets, "score_means": r.scores.mean(1).round(3).tolist()}
    refs = {"ttest": r.random_scores, "random_sets": r.random_set_scores.mean(1)}
    for test, ref in refs.items():
        p, _, sig = concepts.significance(r.scores, ref, r.alpha, test)
        out[test] = {"p_below_alpha": int((p < r.alpha).sum()),
                     "significant_bonferroni": int(sig.sum())}
    return out


def run(s: Settings) -> list[dict]:
    return [run_q(q, s) for q in s.qs]


def summary(rows: list[dict]) -> list[dict]:
    """Per q, layer and concept: score mean ± std, Bonferroni p, significant."""
    out = []
    for r in rows:
        for layer, table in r["tcav"].items():
            out += [{"q": round(r["q"], 3), "cue_gap": round(r["cue_gap"], 3),
                     "cue_logit_gap": round(r["cue_logit_gap"], 3), "layer": layer,
                     "concept": t["concept"], "score": round(t["score_mean"], 3),
                     "std": round(t["score_std"], 3),
                     "magnitude": round(t["magnitude_mean"], 5),
                     "p_bonferroni": t["p_bonferroni"], "significant": t["significant"],
                     "p_sets_bonferroni": t.get("p_sets_bonferroni"),
                     "significant_sets": t.get("significant_sets")}
                    for t in table["table"]]
    return out


def markdown(result: dict) -> str:
    """The docs table of a result.json: per q and layer, the cue concept (red), the class's
    shape (square) and the random concept, with both tests' verdicts."""
    lines = ["| q | cue logit gap | acc. cue agrees / conflicts | layer | concept | TCAV score "
             "(mean ± std) | p, t-test (Bonf.) | signif. t-test | signif. random_sets | "
             "null sets passing t-test / random_sets |", "|" + "---|" * 10]
    for r in result["runs"]:
        for layer, table in r["tcav"].items():
            null = r["null_sets"][layer]
            nulls = "" if not null else (f"{null['ttest']['significant_bonferroni']} / "
                                         f"{null['random_sets']['significant_bonferroni']} "
                                         f"of {null['sets']}")
            for t in table["table"][:-1]:
                yes = lambda v: "**yes**" if v else "no"  # noqa: E731
                lines.append(
                    f"| {r['q']:.2f} | {r['cue_logit_gap']:+.2f} | {r['acc_cue_agrees']:.2f} / "
                    f"{r['acc_cue_conflicts']:.2f} | {layer} | {t['concept']} | "
                    f"{t['score_mean']:.3f} ± {t['score_std']:.3f} | {t['p_bonferroni']:.2g} | "
                    f"{yes(t['significant'])} | {yes(t.get('significant_sets'))} | {nulls} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tcav_controlled",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/tcav_controlled"))
    parser.add_argument("--quick", action="store_true", help="the test's scale (12x12, 2 q)")
    parser.add_argument("--table", type=Path, default=None, metavar="RESULT_JSON",
                        help="print the docs table of a result.json and exit")
    args = parser.parse_args(argv)
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    from jaxviz import io  # noqa: PLC0415
    from jaxviz.plot import concepts as plot_concepts  # noqa: PLC0415

    s = QUICK if args.quick else Settings()
    t0 = time.perf_counter()
    rows = run(s)
    args.out.mkdir(parents=True, exist_ok=True)
    for layer in s.layers:
        fig = plot_concepts.tcav_against_q([r["q"] for r in rows],
                                           [r["_results"][layer] for r in rows], chance=CHANCE)
        fig.savefig(args.out / f"tcav_controlled_{layer}.png", dpi=120, bbox_inches="tight")
    clean = [{k: v for k, v in r.items() if k != "_results"} for r in rows]
    io.write_json(args.out / "result.json", {"settings": dataclasses.asdict(s), "runs": clean,
                                             "seconds": time.perf_counter() - t0})
    for line in summary(clean):
        print(json.dumps(line))
    print(f"wrote {args.out}/result.json and tcav_controlled_<layer>.png "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
