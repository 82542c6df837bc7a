"""Lucid-style feature visualization figures for a trained checkpoint.

    python -m experiments.feature_vis --checkpoint runs/mnist_seed --layer conv2 \\
        --out runs/feature_vis/mnist
    python -m experiments.feature_vis --checkpoint runs/colour/run --layer <layer> \\
        --out runs/feature_vis/colour --data npz:runs/colour/colour_shapes.npz

Writes, under --out:
- atlas_<layer>.png: "what each channel of <layer> looks for": every shown channel's
  feature visualization (Lucid's decorrelated Fourier image, colours from the data set's
  own covariance, Lucid's standard transforms scaled to the image size) beside its
  top-activating validation patches (jaxviz.maximize.patches);
- classes.png: each class maximized three ways, pixel / Fourier (the old parametrizations,
  no transforms) / Lucid (decorrelated Fourier + transforms), with the softmax
  probability the final image reaches;
- extras.png: diversity (one channel, a batch of 4 with and without the diversity term),
  feature inversion and caricature of a validation image at <layer>;
- summary.json: settings, seconds, probabilities, the high-frequency share of each row.

Time on the 2-core machine (docs/bench/feature_vis.log): 81 s for the reference CNN, 69 s
for the colour model, mostly compiling the seven ascents (13-16 minutes each when the
machine was loaded ~20); the figures are described in docs/maximize.md and committed under
docs/figures/feature_vis/.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _load(checkpoint: Path, data: str | None):
    from jaxviz import registry, train, user_data  # noqa: PLC0415

    config = train.TrainConfig.from_dict(json.loads((checkpoint / "config.json").read_text()))
    built = registry.build(config.model, config.seed)
    model, _ = train.load_trained(checkpoint, model=built.model)
    probe = registry.to_probe(built, model)
    if data is None:
        data_file = checkpoint / "data.json"
        data = json.loads(data_file.read_text())["data"] if data_file.exists() else "mnist"
    if data == "mnist":
        from jaxviz.data import load_bundled  # noqa: PLC0415
        ds = load_bundled()
        x_train, x_val = ds.x_train, ds.x_val
    else:
        ds = user_data.load(data, built.input_shape, built.input_range, built.num_classes)
        x_train, x_val = ds.x_train, ds.x_val
    return probe, np.asarray(x_train), np.asarray(x_val)


def _save(fig, path: Path):
    import matplotlib.pyplot as plt  # noqa: PLC0415
    fig.savefig(path)
    plt.close(fig)


def _robust(shape):
    """Lucid's transforms with its pixel counts (12, 8, 4 at 128 px) scaled to the image."""
    import jax  # noqa: F401, PLC0415

    from jaxviz import maximize as mx  # noqa: PLC0415
    f = min(shape[:2]) / 128
    pad, j1, j2 = (max(1, round(v * f * 2)) for v in (12, 8, 4))  # x2: small images want more
    return mx.standard_transforms(shape[:2], pad=pad, jitter=j1, jitter2=j2), (pad, j1, j2)


def high_frequency_share(images) -> np.ndarray:
    """(U,) the share of each image's spectral energy (mean removed) above half Nyquist."""
    x = np.asarray(images, np.float64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    p = np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2
    h, w = x.shape[1:3]
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    high = (f > 0.25)[None, :, :, None]
    return (p * high).sum(axis=(1, 2, 3)) / np.maximum(p.sum(axis=(1, 2, 3)), 1e-30)


def figures(probe, x_train, x_val, layer: str, out: Path, *, steps: int, channels: int,
            seed: int) -> dict:
    import jax  # noqa: PLC0415

    from jaxviz import maximize as mx  # noqa: PLC0415
    from jaxviz.maximize import patches as patches_lib  # noqa: PLC0415
    from jaxviz.plot import maximize as plot  # noqa: PLC0415

    key = jax.random.key(seed)
    shape, vrange = probe.input_shape, probe.input_range or (0.0, 1.0)
    basis = mx.colour_sqrt(x_train[:2000])
    robust, pixels = _robust(shape)
    lucid = dict(param="lucid", colour=basis, transforms=(robust,), steps=steps, key=key)
    summary = {"layer": layer, "steps": steps, "transform_pixels": pixels,
               "colour_basis": np.round(basis, 4).tolist()}
    t0 = time.perf_counter()
    n = probe.layer_shapes((1,) + tuple(shape))[layer][-1]
    chans = list(range(min(channels, n)))
    vis = mx.maximize(probe, probe.params, [mx.channel(layer, c) for c in chans], **lucid)
    top = patches_lib.top_patches(probe, probe.params, x_val, layer, k=4, channels=chans)
    summary["atlas_seconds"] = round(time.perf_counter() - t0, 1)
    summary["receptive_field"] = list(top.box)
    _save(plot.channel_atlas(vis.best, top.patches, layer=layer, channels=chans,
                            vrange=vrange), out / f"atlas_{layer}.png")

    k = probe.output_shape((1,) + tuple(shape))[-1]
    rows, probs = {}, {}
    for name, kw in (("pixel", dict(param="pixel", steps=steps, key=key)),
                     ("fourier", dict(param="fourier", steps=steps, key=key)),
                     ("lucid", lucid)):
        r = mx.maximize(probe, probe.params, [mx.class_logit(c) for c in range(k)], **kw)
        rows[name] = np.asarray(r.best)
        probs[name] = np.asarray(jax.nn.softmax(probe(probe.params, r.best)))[np.arange(k),
                                                                            np.arange(k)]
    summary["class_prob"] = {n: np.round(p, 3).tolist() for n, p in probs.items()}
    summary["high_frequency_share"] = {n: np.round(high_frequency_share(v), 3).tolist()
                                       for n, v in rows.items()}
    _save(plot.parametrization_rows(rows, probs, vrange=vrange), out / "classes.png")
    summary.update(_extras(probe, x_val, layer, lucid, out, vrange, chans))
    return summary


def _extras(probe, x_val, layer, lucid, out, vrange, chans) -> dict:
    import jax  # noqa: PLC0415

    from jaxviz import maximize as mx  # noqa: PLC0415
    from jaxviz.plot import maximize as plot  # noqa: PLC0415

    c = chans[min(3, len(chans) - 1)]
    div = mx.maximize(probe, probe.params, [mx.channel(layer, c) + w * mx.diversity(layer)
                                            for w in (0.0, 20.0)], batch=4, **lucid)
    target = x_val[:2]
    _, acts = probe.run(probe.params, target)
    inv = mx.maximize(probe, probe.params, [mx.match(layer, a) for a in acts[layer]], **lucid)
    car = mx.maximize(probe, probe.params, [mx.caricature(layer, a) for a in acts[layer]],
                      **lucid)
    rel = [float(-v) for v in np.asarray(inv.trace).max(1)]
    _save(plot.lucid_extras(div.best, target, inv.best, car.best, layer=layer, channel=c,
                           vrange=vrange), out / "extras.png")
    return {"inversion_relative_distance": np.round(rel, 4).tolist(),
            "diversity_channel": c}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.feature_vis",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--layer", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", default=None, help="default: the run's data.json, else mnist")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    probe, x_train, x_val = _load(args.checkpoint, args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = figures(probe, x_train, x_val, args.layer, args.out, steps=args.steps,
                      channels=args.channels, seed=args.seed)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
