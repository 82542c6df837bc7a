"""The seed's recipe on the seed's own model: its Keras 3 CNN, trained by `model.fit`, seen
through jaxviz.

Command:  python -m experiments.seed_keras [--out runs/seed_keras] [--epochs 2]
          [--stages seed|quick|full] [--small]
          (sets KERAS_BACKEND=jax itself when it is not set; any other backend is refused)
Time:     with the defaults (2 epochs, the quick report), 18.5 minutes in one run on this
          2-core machine while it was shared (load average ~26): model.fit 11 minutes,
          the report 7; a second run reuses model.keras. --small: 1 epoch on 256 digits.
          Validation accuracy after the default 2 epochs: 0.937 (Keras' and jaxviz's).
Result:   runs/seed_keras/report.html (and report.md, metrics.json, every figure),
          seed_recipe.png (the seed's own panels, one per line of its code), model.keras;
          metrics.json "seed_recipe": the Keras-vs-jaxviz checks (first-layer kernel
          against get_weights(), softmax(logits) against model.predict).

The model is built as the seed builds it: Conv2D 32 -> Conv2D 64 (3x3, relu) -> 2x2
MaxPooling -> Dropout 0.25 -> Flatten -> Dense 128 (relu) -> Dropout 0.5 -> Dense 10
softmax "preds". Layers carry the names Keras itself gives a first model ("conv2d",
"conv2d_1", ...), spelled out so they do not depend on what else the process built.
Training is Keras' own (`compile` + `fit`, one-hot labels, Adam); jaxviz reads the trained
model through `jaxviz.core.probe.from_model(model)`, whose output is the logits of
"preds" (its softmax left out on each call, the model untouched): nothing to swap.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

from jaxviz import attribution as A  # noqa: E402
from jaxviz import data, filters, io, occlusion, report  # noqa: E402
from jaxviz.core import probe as probe_lib  # noqa: E402
from jaxviz.maximize import api as maximize_api  # noqa: E402
from jaxviz.report.base import Section, save  # noqa: E402

matplotlib.use("Agg")

SEED_LAYERS = ("conv2d", "conv2d_1", "max_pooling2d", "dropout", "flatten", "dense",
               "dropout_1", "preds")


def check_backend() -> None:
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"KERAS_BACKEND must be 'jax' for jaxviz (Keras runs on "
                           f"{keras.backend.backend()!r}); run with KERAS_BACKEND=jax")


def seed_cnn(input_shape=(28, 28, 1), num_classes: int = 10) -> keras.Model:
    """The seed's Keras MNIST CNN, layer for layer. x: (N, 28, 28, 1) -> (N, 10) softmax."""
    L = keras.layers
    names = iter(SEED_LAYERS)
    return keras.Sequential([
        keras.Input(input_shape),
        L.Conv2D(32, kernel_size=(3, 3), activation="relu", name=next(names)),
        L.Conv2D(64, (3, 3), activation="relu", name=next(names)),
        L.MaxPooling2D(pool_size=(2, 2), name=next(names)),
        L.Dropout(0.25, name=next(names)),
        L.Flatten(name=next(names)),
        L.Dense(128, activation="relu", name=next(names)),
        L.Dropout(0.5, name=next(names)),
        L.Dense(num_classes, activation="softmax", name=next(names)),
    ], name="seed_cnn")


def train(model: keras.Model, ds, *, epochs: int, batch_size: int, seed: int,
          validate: bool = True, verbose: int = 0) -> dict:
    """Keras' own training: compile + fit on one-hot labels, as the seed's val_y is.
    validate: Keras also evaluates the validation digits after each epoch.
    Returns the history's last epoch ({"accuracy": ..., "val_accuracy": ...})."""
    keras.utils.set_random_seed(seed)  # shuffling and dropout
    k = model.output_shape[-1]
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-3),
                  metrics=["accuracy"])
    hist = model.fit(ds.x_train, keras.utils.to_categorical(ds.y_train, k),
                     batch_size=batch_size, epochs=epochs, verbose=verbose,
                     validation_data=((ds.x_val, keras.utils.to_categorical(ds.y_val, k))
                                      if validate else None))
    return {name: float(v[-1]) for name, v in hist.history.items()}


def load_or_train(config: dict, ds, out: Path, verbose: int = 0):
    """The run directory's model.keras when its config.json matches, else Keras' own
    training (saved as model.keras). Returns (model, history or None, seconds or None)."""
    path, cfg_path = out / "model.keras", out / "config.json"
    if path.exists() and cfg_path.exists() and json.loads(cfg_path.read_text()) == config:
        print(f"[train] reusing {path} (same config)", flush=True)
        return keras.saving.load_model(path), None, None
    t0 = time.perf_counter()
    keras.utils.set_random_seed(config["seed"])  # the weight initialisation
    model = seed_cnn()
    history = train(model, ds, epochs=config["epochs"], batch_size=config["batch_size"],
                    seed=config["seed"], validate=config["validate"], verbose=verbose)
    seconds = time.perf_counter() - t0
    model.save(path)
    io.write_json(cfg_path, config)
    said = {k: round(v, 4) for k, v in history.items() if k.endswith("accuracy")}
    print(f"[train] model.fit, {config['epochs']} epoch(s): {said} ({seconds:.1f}s) -> {path}",
          flush=True)
    return model, history, seconds


# ---- the seed's own panels, one per line of its code -----------------------------------

@dataclasses.dataclass(frozen=True)
class SeedPanels:
    """image: (H, W, C) the seed's val_x[i]; label: its class; filter0: (kh, kw) the first
    conv filter; classes: (K, H, W, C) one maximized image per class; occlusion: (H, W) the
    recipe's heat map; guided, grad_cam: (H, W) maps; checks: Keras-vs-jaxviz agreement."""
    index: int
    image: np.ndarray
    label: int
    filter0: np.ndarray
    classes: np.ndarray
    occlusion: np.ndarray
    guided: np.ndarray
    grad_cam: np.ndarray
    checks: dict


@dataclasses.dataclass(frozen=True)
class SeedRecipeStage:
    """The seed's lines on its own Keras model, as jaxviz calls (a report stage).

    model: the trained keras.Model (its own `get_weights` and `predict` are the checks'
    independent side); index: the seed's `i = 23`; steps: activation-maximization steps."""
    model: keras.Model
    index: int = 23
    steps: int = 256
    size: int = 8
    name: str = "seed_recipe"

    def run(self, inputs, earlier) -> SeedPanels:
        probe, params = inputs.probe, inputs.params
        x, y = inputs.x_val[self.index:self.index + 1], inputs.y_val[self.index:self.index + 1]
        first = self.model.layers[0]
        kernel = np.asarray(filters.conv_kernel(probe, params, first.name))
        keras_kernel = first.get_weights()[0]  # the seed: model.layers[0].get_weights()[0]
        batch = inputs.x_val[:256]
        keras_probs = self.model.predict(batch, verbose=0)
        jaxviz_probs = np.asarray(jax.nn.softmax(probe(params, batch), axis=-1))
        classes = maximize_api.all_units(probe, params, "logits", key=inputs.key,
                                         steps=self.steps)
        kv = occlusion.keras_vis_occlusion(probe, params, x, y, size=self.size)
        guided = A.guided_backprop(probe, params, x, y).map
        cam = A.grad_cam(probe, params, x, y).map
        checks = {"kernel_max_abs_diff": float(np.abs(kernel - keras_kernel).max()),
                  "probs_max_abs_diff": float(np.abs(keras_probs - jaxviz_probs).max()),
                  "same_predictions": bool((keras_probs.argmax(-1)
                                            == jaxviz_probs.argmax(-1)).all()),
                  "class_trace_rose": int((np.asarray(classes.trace)[:, -1]
                                           > np.asarray(classes.trace)[:, 0]).sum())}
        return SeedPanels(self.index, np.asarray(x[0]), int(y[0]), kernel[:, :, 0, 0],
                          np.asarray(classes.images), np.asarray(kv.map[0]),
                          np.asarray(guided[0]).sum(-1), np.asarray(cam[0]), checks)

    def render(self, result: SeedPanels, out_dir: Path) -> list[Path]:
        return save(seed_figure(result), out_dir, "seed_recipe.png")

    def metrics(self, result: SeedPanels) -> dict:
        return {"seed_recipe": result.checks}

    def section(self, result: SeedPanels, figures: list[str]) -> Section:
        return Section("The seed's own panels", (
            "Top: val_x[23], the first conv filter, the recipe's occlusion heat map "
            "(p(true class)), guided backprop and Grad-CAM. Bottom: each class maximized "
            "on its logit (no softmax swap)."), figures,
            {"index": result.index, "steps": self.steps, "size": self.size,
             **result.checks})


def seed_figure(p: SeedPanels):
    """Two rows: the image and its four seed analyses; the K maximized classes."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (figures only, Agg backend)
    k = len(p.classes)
    fig = plt.figure(figsize=(max(k, 5) * 1.4, 3.4))
    grid = fig.add_gridspec(2, max(k, 5) * 2)
    top = [("val_x[%d], class %d" % (p.index, p.label), p.image[..., 0], "gray"),
           ("layers[0] filter 0", p.filter0, "gray"),
           ("iter_occlusion p(true), 0-1", p.occlusion, "viridis"),
           ("guided backprop", p.guided, "RdBu_r"), ("Grad-CAM", p.grad_cam, "jet")]
    width = max(k, 5) * 2 // len(top)
    for j, (title, img, cmap) in enumerate(top):
        ax = fig.add_subplot(grid[0, j * width:(j + 1) * width])
        lim = float(np.abs(img).max()) or 1.0
        kw = (dict(vmin=-lim, vmax=lim) if cmap == "RdBu_r"
              else dict(vmin=0.0, vmax=1.0) if cmap == "viridis" else {})  # a probability
        ax.imshow(img, cmap=cmap, **kw)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    for c in range(k):
        ax = fig.add_subplot(grid[1, 2 * c:2 * c + 2])
        ax.imshow(p.classes[c, ..., 0], cmap="gray")
        ax.set_title(f"perception of {c}", fontsize=7)
        ax.axis("off")
    return fig


def stages_for(which: str, model, steps: int) -> list:
    """The report's stages: "seed" (accuracy, summary and architecture, filters and the
    seed's own panels), "quick" (the quick report + the seed's panels) or "full"."""
    seed = SeedRecipeStage(model, steps=steps)
    if which == "seed":
        return [report.AccuracyStage(), report.ArchitectureStage(), report.FiltersStage(),
                seed]
    return [*report.default_stages(small=which == "quick"), seed]


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/seed_keras")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (Keras' and jaxviz's)")
    parser.add_argument("--epochs", type=int, default=None, help="default 2 (--small: 1)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on the first N bundled digits (default all 4,000)")
    parser.add_argument("--steps", type=int, default=None,
                        help="activation-maximization steps of the seed's panels "
                             "(default 256; --small: 4)")
    parser.add_argument("--stages", choices=("seed", "quick", "full"), default=None,
                        help="seed: the seed's lines only; quick (default): the quick "
                             "report too; full: every method and metric (minutes)")
    parser.add_argument("--small", action="store_true",
                        help="tiny run for tests: 1 epoch on 256 digits, few steps, "
                             "the seed's lines only")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    check_backend()
    args = parse(argv)
    epochs = args.epochs if args.epochs is not None else (1 if args.small else 2)
    n_train = args.train_images or (256 if args.small else None)
    steps = args.steps or (4 if args.small else 256)
    which = args.stages or ("seed" if args.small else "quick")
    config = {"model": "seed_cnn (Keras 3)", "epochs": epochs, "batch_size": args.batch_size,
              "train_images": n_train, "validate": not args.small, "seed": args.seed}
    ds = data.load_bundled()
    if n_train:
        ds = ds._replace(x_train=ds.x_train[:n_train], y_train=ds.y_train[:n_train])
    out = io.ensure_dir(args.out, "out")
    t0 = time.perf_counter()
    model, history, train_seconds = load_or_train(config, ds, out)
    probe = probe_lib.from_model(model)
    print(f"[probe] {probe}: layers {list(probe.layer_shapes((1, 28, 28, 1)))}", flush=True)
    metrics = report.run_report(
        probe, probe.params, ds.x_val, ds.y_val, out, seed=args.seed, small=which != "full",
        stages=stages_for(which, model, steps), train_seconds=train_seconds,
        subject=SEED_KERAS)
    if history is not None:
        metrics["keras_history"] = history
        io.write_json(out / "metrics.json", metrics)
    print(f"done in {time.perf_counter() - t0:.1f}s: validation accuracy "
          f"{metrics['val_accuracy']:.4f}; seed checks {metrics['seed_recipe']}; "
          f"open {out}/report.html", flush=True)


SEED_KERAS = report.Subject(model="the seed's own Keras 3 CNN (trained by model.fit)",
                            data="the bundled MNIST digits")

if __name__ == "__main__":
    main()
