"""The seed recipe as one pipeline: every analysis on a trained model, then the report.

Used by `python -m experiments.mnist_seed` (after training) and `jaxviz report`.
Each stage writes its files atomically and logs one line: stage, seconds, where files went.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxviz.report import Section, write_atomic, write_report


def pick_examples(x, y, n: int):
    """One example per class first (in class order), then the following ones."""
    firsts = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)]
    rest = [i for i in range(len(y)) if i not in set(firsts)]
    idx = (firsts + rest)[:n]
    return x[idx], y[idx]


def analyse(probe, params, x_val, y_val, out_dir, *, seed: int = 0, small: bool = False,
            input_shape=(28, 28, 1), accuracy: float | None = None, train_seconds=None,
            log=print) -> dict:
    """Run every analysis on (probe, params) and write figures, metrics.json and the report."""
    from jaxviz import arch, filters, occlusion  # noqa: PLC0415
    from jaxviz.plot import attribution as plot_attribution, maximize as plot_maximize  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    n_show = 4 if small else 8
    xs, ys = pick_examples(np.asarray(x_val), np.asarray(y_val), n_show)
    steps = 16 if small else 256
    times, metrics, sections = {}, {}, []

    def stage(name, fn):
        t0 = time.perf_counter()
        result = fn()
        times[name] = round(time.perf_counter() - t0, 2)
        log(f"[{name}] {times[name]:.1f}s -> {out}")
        return result

    if accuracy is None:
        accuracy = stage("accuracy", lambda: _accuracy(probe, params, x_val, y_val))
    metrics["val_accuracy"] = accuracy

    w = stage("architecture", lambda: arch.write_summary_figures(probe, params, xs[:1], out))
    sections.append(Section(
        "Architecture", "Layer table (output shapes, parameters, FLOPs) and the data-flow "
        "diagram traced from the program, the pure-matplotlib counterpart of Keras' plot_model.",
        _pngs(out, w["figures"]),
        {"input": tuple(xs.shape[1:])}))
    metrics["params"] = w.get("params")
    metrics["forward_flops"] = w.get("flops")

    w = stage("filters", lambda: filters.write_filter_figures(probe, params, xs[:1], out))
    sections.append(Section("Convolution filters", "Each tile is one kernel scaled to its own range; "
                            "first-layer kernels look like small edge and blob detectors.",
                            _pngs(out, w["figures"]), {}))
    w = stage("feature_maps", lambda: filters.write_feature_figures(
        probe, params, xs[:3], out, labels=ys[:3]))
    sections.append(Section("Feature maps", "Activations of each conv layer for three validation "
                            "digits: early channels keep the stroke, later ones respond to parts.",
                            _pngs(out, w["figures"]), {"digits": ys[:3].tolist()}))

    w = stage("maximize", lambda: plot_maximize.write_maximize_figures(
        probe, params, out, jax.random.fold_in(key, 1), steps=steps, shape=input_shape,
        max_channels=8 if small else 32))
    preds = w["class_pred"]
    metrics["maximize"] = {
        "classified_as_target": int(sum(p == k for k, p in enumerate(preds))), "units": len(preds),
        "class_prob": w["class_prob"], "tv_plain": w["tv_plain"], "tv_smooth": w["tv_smooth"]}
    unit_figs = [w[k] for k in w if k.startswith("units_")]
    sections.append(Section(
        "Activation maximization", "Inputs that maximize each class logit and the conv channels "
        "(gradient ascent, all units in one vmapped program; titles give the softmax probability "
        "of the class). The TV figure shows what the total-variation prior buys.",
        _pngs(out, [w["classes"], w["progress"], w["tv_comparison"], w["trace"], *unit_figs]),
        {"steps": steps, "optimizer": "Adam 0.05", "regularizer": "total variation, weight 10",
         "parametrization": "pixels through a sigmoid into [0, 1]"}))

    w = stage("occlusion", lambda: occlusion.write_occlusion_figures(
        probe, params, xs, ys, out, window=4, stride=2))
    metrics["occlusion"] = w.get("metrics", {})
    sections.append(Section("Occlusion sensitivity", "How much the true-class score drops when a "
                            "patch is hidden (red: important). The seed-parity figure uses the "
                            "seed's 40x40 gray patches, which hide most of a digit.",
                            _pngs(out, w["figures"]), w.get("settings", {})))

    occlusion_columns = w.get("columns")
    w = stage("attribution", lambda: plot_attribution.write_attribution_figures(
        probe, params, xs, ys, out, jax.random.fold_in(key, 2), extra_columns=occlusion_columns,
        n_samples=16 if small else 50))
    metrics["attribution"] = {"ig_delta_rel_max": w["ig_delta_rel"], "cam_layer": w["cam_layer"],
                              "randomization_rank_correlation": w["randomization"]}
    sections.append(Section(
        "Gradient methods", "Rows are validation digits; columns compare saliency, guided "
        "backprop, SmoothGrad, Integrated Gradients, Grad-CAM, Guided Grad-CAM and occlusion. "
        "The second figure is Adebayo et al.'s sanity check: maps that don't change when the "
        "weights are re-initialised from the top do not explain the model.",
        [_rel(out, w["comparison"]), _rel(out, w["sanity"])],
        {"IG": "64 Gauss-Legendre steps, zero baseline", "SmoothGrad": "sigma 15% of range",
         "Grad-CAM layer": w["cam_layer"]}))

    metrics["stage_seconds"] = times
    if train_seconds is not None:
        metrics["stage_seconds"]["train"] = round(train_seconds, 2)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=_jsonable))
    table = [["quantity", "value"], ["validation accuracy", f"{accuracy:.4f}"]]
    table.append(["IG completeness |delta| / |f(x) - f(b)| (max over digits)",
                  f"{metrics['attribution']['ig_delta_rel_max']:.2e}"])
    hits = metrics["maximize"].get("classified_as_target")
    if hits is not None:
        table.append(["classes whose maximizing image is classified as that class",
                      f"{hits} / {metrics['maximize'].get('units')}"])
    table += [[f"time: {k} (s)", f"{v:.1f}"] for k, v in times.items()]
    write_report(out, "jaxviz: inside the seed's MNIST CNN",
                 "Every figure below was produced by pure, jitted JAX functions on the bundled "
                 "MNIST digits; settings are listed under each section.", table, sections)
    log(f"[report] {out / 'report.html'}")
    return metrics


def _pngs(out: Path, paths) -> list[str]:
    """The PNG figures among paths, relative to the report's directory."""
    return [_rel(out, p) for p in paths if str(p).endswith(".png")]


def _rel(out: Path, path) -> str:
    return str(Path(path).resolve().relative_to(out.resolve()))


def _accuracy(probe, params, x, y, batch: int = 500) -> float:
    fn = jax.jit(probe)
    correct = sum(int((np.asarray(fn(params, x[i:i + batch])).argmax(-1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return correct / len(x)


def _jsonable(v):
    if isinstance(v, (np.generic, np.ndarray)) or hasattr(v, "tolist"):
        return v.tolist()
    return str(v)
