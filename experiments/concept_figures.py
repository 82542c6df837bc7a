"""The concept figures: discovered concepts (NMF) of the reference CNN and of the colour
model, and a TCAV table figure, written to --out.

    python -m experiments.concept_figures --out runs/concept_figures    # ~2 min on 2 cores

- mnist_concepts.png: MnistCNN (trained here for 2 epochs on the bundled digits, seed 0),
  5 NMF concepts of conv2 (after clipping its pre-ReLU output at 0) over 256 validation
  digits, each with its direction's feature visualization (jaxviz.maximize, 128 steps),
  its top patches, its heat maps and its importance for class 3.
- colour_concepts.png: the controlled experiment's SmallCNN trained at q = 0.9, 4 concepts
  of conv2 over 192 of its images, importance for class "square".
- colour_tcav.png: that model's TCAV bars (red, square, random) at conv2.
docs/concepts.md describes them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np


def mnist_model(epochs: int = 2):
    from jaxviz import train  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    from jaxviz.data import load_bundled  # noqa: PLC0415

    ds = load_bundled()
    fit = train.fit(train.TrainConfig(epochs=epochs), ds, quiet=True)
    return probe_lib.from_model(fit.model), ds, fit.metrics[-1]["val_accuracy"]


def concept_figure(probe, x, x_class, target, layer, k, key, title, vis_steps=128):
    from jaxviz import concepts, maximize  # noqa: PLC0415
    from jaxviz.plot import concepts as plot_concepts  # noqa: PLC0415

    d = concepts.discover(probe, probe.params, x, layer=layer, n_concepts=k, key=key,
                          clip_negative=True)
    imp = concepts.concept_importance(probe, probe.params, x_class, d, target)
    patches, _ = concepts.top_patches(x, d, n=5)
    vis = maximize.maximize(probe, probe.params, concepts.direction_objectives(d), key=key,
                            steps=vis_steps, param="fourier",
                            transforms=(maximize.jitter(1),)).best
    order = np.argsort(-imp["importance"])
    fig = plot_concepts.discovered_concepts(
        x[:3], d.heat[:3][..., order], patches[order], importance=imp["importance"][order],
        visualizations=np.asarray(vis)[order], title=title)
    return fig, {"layer": layer, "nmf_error": d.error, "clipped": d.clipped,
                 "importance": imp["importance"][order].round(4).tolist(),
                 "positive_fraction": imp["positive_fraction"][order].round(3).tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/concept_figures"))
    args = parser.parse_args(argv)
    from experiments import tcav_controlled as T  # noqa: PLC0415
    from jaxviz import concepts, io  # noqa: PLC0415
    from jaxviz.plot import concepts as plot_concepts  # noqa: PLC0415

    args.out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(0)
    summary = {}
    probe, ds, acc = mnist_model()
    xv, yv = np.asarray(ds.x_val), np.asarray(ds.y_val)
    fig, summary["mnist"] = concept_figure(probe, xv[:256], xv[yv == 3][:64], 3, "conv2", 5,
                                           key, "MnistCNN conv2: NMF concepts (class 3)")
    summary["mnist"]["val_accuracy"] = acc
    fig.savefig(args.out / "mnist_concepts.png", dpi=130, bbox_inches="tight")
    s = T.Settings()
    cprobe, accs = T.train_model(0.9, s)
    x, y, _ = T.make_data(0.9, 192, s.size, 11)
    fig, summary["colour"] = concept_figure(cprobe, x, x[y == 0][:64], 0, "conv2", 4, key,
                                            "colour model (q = 0.9) conv2: NMF concepts "
                                            "(class square)")
    summary["colour"].update(accs)
    fig.savefig(args.out / "colour_concepts.png", dpi=130, bbox_inches="tight")
    r = concepts.tcav(cprobe, cprobe.params, x[y == 0][:64], 0, T.concept_sets(60, s.size, 6),
                      T.random_images(400, s.size, 5), layer="conv2", key=key)
    plot_concepts.tcav_bars(r).savefig(args.out / "colour_tcav.png", dpi=130,
                                       bbox_inches="tight")
    summary["colour_tcav"] = r.rows()
    io.write_json(args.out / "summary.json", summary)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
