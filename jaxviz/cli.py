"""The `jaxviz` command: train, then look inside the trained model one analysis at a time.

    jaxviz train --out runs/cnn
    jaxviz summary|filters|features|maximize|occlusion|attribute --checkpoint runs/cnn --out figs
    jaxviz report --checkpoint runs/cnn --out runs/cnn/report   # every analysis + report.html

Errors print one line and exit 1 (2 for bad arguments); --debug shows the traceback.
Every warning an analysis raises prints as one `warning: ...` line on stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SHARED = ("--checkpoint", "--out", "--data", "--data-dir", "--seed", "--quiet")


def _common(p: argparse.ArgumentParser, *, checkpoint: bool = True, out_default: str = "figures"):
    if checkpoint:
        p.add_argument("--checkpoint", default=None, metavar="DIR",
                       help="run directory written by `jaxviz train` (config.json + "
                            "checkpoints/); not needed when --model is a trained PATH.keras")
    p.add_argument("--out", default=out_default, metavar="DIR", help="output directory")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="'mnist_cnn', 'package.module:factory' (current directory importable) "
                        "'path/to/file.py:factory' or a trained 'path/to/model.keras'; the "
                        "checkpoint's if omitted")
    p.add_argument("--data", default=None, metavar="SOURCE", type=_data_source,
                   help="'bundled' (5,000 digits, offline), 'mnist', 'fashion_mnist' (IDX "
                        "files), 'npz:PATH' (x, y arrays) or 'folder:PATH' (one subfolder per "
                        "class); default: the checkpoint's, else bundled")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory with the four IDX files ($JAXVIZ_DATA_DIR or the cache if omitted)")
    p.add_argument("--download", action="store_true",
                   help="explicitly download the full data set into the cache if missing")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _data_source(text: str) -> str:
    """argparse type for --data: a known set name or npz:/folder: with a path."""
    if text in ("bundled", "mnist", "fashion_mnist"):
        return text
    kind, _, path = text.partition(":")
    if kind in ("npz", "folder") and path:
        return text
    raise argparse.ArgumentTypeError(
        f"expected bundled, mnist, fashion_mnist, npz:PATH or folder:PATH; got {text!r}")


def _method_names() -> list[str]:
    """The attribution registry's names, read when the parser is built: a method registered
    before that is a choice with no edit here."""
    from jaxviz import attribution  # noqa: PLC0415
    return list(attribution.METHODS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxviz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("train", help="train a model (default: the Keras recipe's MNIST CNN)", formatter_class=fmt)
    _common(p, checkpoint=False, out_default="runs/train")
    p.add_argument("--epochs", type=int, default=None, help="TrainConfig's if omitted")
    p.add_argument("--batch-size", type=int, default=None, help="TrainConfig's if omitted")
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate; TrainConfig's if omitted")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint (to --epochs, "
                        "which may be more than it was trained for; its other settings)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (refused without this or --resume)")
    p.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="share of each class held out for validation, npz:/folder: data "
                        "(default 0.2; bundled and MNIST have fixed splits)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("summary", help="layer table and architecture diagram", formatter_class=fmt)
    _common(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("filters", help="kernel grids of every conv layer", formatter_class=fmt)
    _common(p)
    p.set_defaults(func=cmd_filters)

    p = sub.add_parser("features", help="feature maps of validation digits", formatter_class=fmt)
    _common(p)
    p.add_argument("--layers", default=None, help="comma-separated layer names (default: conv layers)")
    p.add_argument("--images", type=int, default=4, help="number of validation digits")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("maximize", help="activation maximization", formatter_class=fmt)
    _common(p)
    p.add_argument("--layer", default=None,
                   help="layer whose units to maximize ('logits' = classes); all figures if omitted")
    p.add_argument("--units", default=None, help="e.g. 0-9 or 0,3,5 (default: all)")
    p.add_argument("--steps", type=int, default=256, help="gradient-ascent steps")
    p.set_defaults(func=cmd_maximize)

    p = sub.add_parser("occlusion", help="occlusion sensitivity maps", formatter_class=fmt)
    _common(p)
    p.add_argument("--window", type=int, default=4, help="occluding square's side (pixels)")
    p.add_argument("--stride", type=int, default=2, help="step between window positions")
    p.add_argument("--images", type=int, default=8, help="number of validation digits")
    p.add_argument("--method", choices=("exact", "incremental"), default="exact",
                   help="incremental: recompute only each layer's changed region (same maps "
                        "to 1e-4, ~4x faster at stride 1 on CPU)")
    p.set_defaults(func=cmd_occlusion)

    p = sub.add_parser("attribute", help="gradient attributions (saliency ... Grad-CAM)", formatter_class=fmt)
    _common(p)
    p.add_argument("--method", default="all", choices=["all", *_method_names()],
                   help="one registered method, or 'all' for the comparison figure")
    p.add_argument("--images", type=int, default=8, help="number of validation digits")
    p.add_argument("--target", default="label", type=parse_target, metavar="T",
                   help="what to explain: label (each image's true class), pred (the "
                        "predicted class), all (every class), K (class K), or LAYER:C "
                        "(channel C of a layer)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="a CAM's layer, or attribution to this layer for a method with a "
                        "layer form")
    p.add_argument("--image", default=None, metavar="PATH",
                   help="explain this image file (converted and resized to the model's "
                        "input), drawn over the original")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("report", help="every analysis plus report.html / report.md", formatter_class=fmt)
    _common(p)
    p.add_argument("--small", action="store_true",
                   help="few images and steps, the seed's six attribution methods (a quick look)")
    p.set_defaults(func=cmd_report)
    return parser


def _info(args, msg: str) -> None:
    if not args.quiet:
        print(msg, flush=True)


DATA_RECORD = "data.json"  # in a run directory: the --data the model was trained on


def _data(args, built, source: str, val_fraction: float | None = None):
    """The data set `source` names, fitted to the built model's input spec; val_fraction
    (npz:/folder: only) of each class held out, user_data.VAL_FRACTION if None."""
    from jaxviz import data as data_lib, user_data  # noqa: PLC0415
    spec = (built.input_shape, built.input_range, built.num_classes)
    fraction = user_data.VAL_FRACTION if val_fraction is None else val_fraction
    if user_data.is_user_source(source):
        return user_data.load(source, *spec, val_fraction=fraction)
    if fraction != user_data.VAL_FRACTION:
        raise ValueError(f"--val-fraction {fraction:g}: --data {source} has a fixed validation "
                         f"split; the fraction applies to npz:PATH and folder:PATH data")
    ds = data_lib.load(source, args.data_dir, args.download)
    if built.num_classes is not None and int(ds.y_train.max()) >= built.num_classes:
        raise ValueError(f"--data {source}: labels reach {int(ds.y_train.max())} but the model "
                         f"outputs {built.num_classes} classes")
    return ds._replace(x_train=data_lib.adapt_images(ds.x_train, built.input_shape),
                       x_val=data_lib.adapt_images(ds.x_val, built.input_shape))


def _recorded_data(run: Path) -> str:
    import json  # noqa: PLC0415
    path = run / DATA_RECORD
    return json.loads(path.read_text())["data"] if path.exists() else "bundled"


def _recorded_val_fraction(run: Path) -> float | None:
    import json  # noqa: PLC0415
    path = run / DATA_RECORD
    return json.loads(path.read_text()).get("val_fraction") if path.exists() else None


def _loaded(args):
    """(probe, params, built, dataset adapted to the model's input shape)."""
    from jaxviz import registry, train  # noqa: PLC0415

    if args.checkpoint is None:
        return _loaded_model_file(args)
    run = Path(args.checkpoint)
    store = train.CheckpointStore(run)
    saved = store.read_config() if run.exists() else None
    if saved is None:
        raise FileNotFoundError(f"no checkpoint in {str(run)!r}: expected {run}/config.json and "
                                f"{run}/checkpoints/ from `jaxviz train --out {run}`")
    if args.model is not None and registry.canonical(args.model) != saved.get("model"):
        raise ValueError(f"checkpoint {str(run)!r} holds model {saved.get('model')!r}, "
                         f"not --model {args.model!r}")
    config = train.TrainConfig.from_dict(saved)
    built = registry.build(config.model, config.seed)
    model, _ = train.load_trained(run, model=built.model)
    probe = registry.to_probe(built, model)
    source = args.data or _recorded_data(run)
    ds = _data(args, built, source, _recorded_val_fraction(run))
    train.check_batchnorm_statistics(model, ds.x_val, ds.y_val)  # warns, naming the fix
    return probe, probe.params, built, ds.x_val, ds.y_val, _subject(config.model, run, source, ds)


def _loaded_model_file(args):
    """As _loaded, for a model trained by its own library (--model PATH.keras): no run."""
    from jaxviz import registry  # noqa: PLC0415
    from jaxviz.report import Subject  # noqa: PLC0415
    if not (args.model or "").endswith(".keras"):
        raise ValueError("--checkpoint DIR is required (a run of `jaxviz train`), unless "
                         "--model is a trained model file PATH.keras")
    built = registry.build(args.model, args.seed)
    probe = registry.to_probe(built)
    source = args.data or "bundled"
    ds = _data(args, built, source)
    subject = Subject(model=Path(args.model).name,
                      data=f"{len(ds.x_val)} validation images of --data {source}",
                      class_names=tuple(ds.class_names))
    return probe, probe.params, built, ds.x_val, ds.y_val, subject


def _subject(spec: str, run: Path, source: str, ds):
    """The report's words for this model and data: the model spec's factory and file, the
    data source, the data's class names (an image folder's subfolders)."""
    from jaxviz.report import Subject  # noqa: PLC0415
    where, _, factory = spec.rpartition(":")
    model = f"{factory} from {Path(where).name}" if where else spec
    return Subject(model=f"{model} (checkpoint {run})",
                   data=f"{len(ds.x_val)} validation images of --data {source}",
                   class_names=tuple(ds.class_names))


def _out(args) -> Path:
    from jaxviz import io  # noqa: PLC0415
    try:
        return io.ensure_dir(args.out, "--out")
    except OSError as err:
        cause = err.__cause__ if isinstance(err.__cause__, OSError) else err
        raise PermissionError(f"--out {str(args.out)!r} is not writable: "
                              f"{cause.strerror or cause}") from err


def _run(args, stage, n_images: int = 1) -> int:
    """Load the checkpoint, run one report stage on n validation examples, write its files."""
    from jaxviz import report  # noqa: PLC0415
    t0 = time.perf_counter()
    probe, params, built, x, y, subject = _loaded(args)
    inputs = report.inputs_for(probe, params, x, y, n=n_images, seed=args.seed, subject=subject)
    done = report.run_stage(stage, inputs, _out(args))  # its warnings reach _warning_lines
    _report_written(args, done.paths, t0)
    return 0


def _report_written(args, paths, t0: float) -> None:
    _info(args, f"{args.command}: {time.perf_counter() - t0:.1f}s, wrote {len(paths)} file(s) "
                f"to {args.out}")


def cmd_train(args) -> int:
    with _warning_lines():  # the batch and class warnings reach the user as analysis ones do
        return _train(args)


def _train_config(args, saved: dict | None):
    """TrainConfig from the flags; a resumed run's own settings where a flag is omitted."""
    import dataclasses  # noqa: PLC0415
    from jaxviz import registry, train  # noqa: PLC0415
    base = train.TrainConfig.from_dict(saved) if saved else train.TrainConfig()
    model = registry.canonical(args.model) if args.model else (
        base.model if saved else registry.canonical("mnist_cnn"))
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size,
                 "learning_rate": args.learning_rate}
    return dataclasses.replace(base, model=model, seed=args.seed,
                               **{k: v for k, v in overrides.items() if v is not None})


def _train_data_record(args, source: str) -> dict:
    """data.json for this run; a resumed run must keep its data and validation split."""
    import json  # noqa: PLC0415
    from jaxviz import user_data  # noqa: PLC0415
    fraction = user_data.VAL_FRACTION if args.val_fraction is None else args.val_fraction
    path = Path(args.out) / DATA_RECORD
    if args.resume and path.exists():
        old = json.loads(path.read_text())
        if old["data"] != source:
            raise ValueError(f"--resume: {args.out} was trained on --data {old['data']}, "
                             f"not {source}")
        recorded = old.get("val_fraction", user_data.VAL_FRACTION)
        if args.val_fraction is not None and recorded != fraction:
            raise ValueError(f"--resume: {args.out} was trained with --val-fraction "
                             f"{recorded:g}, not {fraction:g}")
        fraction = recorded
    return {"data": source, "val_fraction": fraction, "split_seed": user_data.SPLIT_SEED}


def _train(args) -> int:
    from jaxviz import io, registry, train, user_data  # noqa: PLC0415

    store = train.CheckpointStore(args.out)
    store.refuse_replacing(args.resume, args.overwrite)  # before anything in --out changes
    config = _train_config(args, store.read_config() if args.resume and store.run_dir.exists()
                           else None)
    built = registry.build(config.model, config.seed)
    source = user_data.canonical(args.data or "bundled")
    record = _train_data_record(args, source)
    ds = _data(args, built, source, record["val_fraction"])
    _info(args, f"data {ds.name}: {len(ds.x_train)} train / {len(ds.x_val)} validation "
                f"images {ds.x_train.shape[1:]}")
    io.write_json(Path(args.out) / DATA_RECORD, record)
    t0 = time.perf_counter()
    log = (lambda m: _info(args, f"epoch {m['epoch']}: loss {m['train_loss']:.4f}, "
                                 f"val accuracy {m['val_accuracy']:.4f} ({m['seconds']:.1f}s)"))
    result = train.fit(config, ds, args.out, resume=args.resume, overwrite=args.overwrite,
                       quiet=args.quiet, model=built.model, log=log)
    if result.resumed_from:
        _info(args, f"resumed from epoch {result.resumed_from}")
    if result.recalibration:
        r = result.recalibration
        _info(args, f"BatchNorm statistics recomputed over the training images: validation "
                    f"accuracy {r['val_accuracy_before']:.4f} -> {r['val_accuracy_after']:.4f}")
    acc = result.metrics[-1]["val_accuracy"] if result.metrics else float("nan")
    _info(args, f"train: {time.perf_counter() - t0:.1f}s, validation accuracy {acc:.4f}, "
                f"checkpoints in {args.out}/checkpoints")
    return 0


def cmd_summary(args) -> int:
    from jaxviz import report  # noqa: PLC0415
    return _run(args, report.ArchitectureStage())


def cmd_filters(args) -> int:
    from jaxviz import report  # noqa: PLC0415
    return _run(args, report.FiltersStage())


def cmd_features(args) -> int:
    from jaxviz import report  # noqa: PLC0415
    layers = args.layers.split(",") if args.layers else None
    return _run(args, report.FeatureMapsStage(n_images=args.images, layers=layers), args.images)


def parse_units(text: str | None) -> list[int] | None:
    if text is None:
        return None
    units = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            units += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError as err:
            raise ValueError(f"--units must look like 0-9 or 0,3,5; got {text!r}") from err
    return units


def cmd_maximize(args) -> int:
    from jaxviz import report  # noqa: PLC0415
    if args.layer is None and args.units is None:
        stage = report.MaximizeStage(steps=args.steps)
    else:
        stage = report.UnitsStage(args.layer or "logits", parse_units(args.units),
                                  steps=args.steps)
    return _run(args, stage)


def cmd_occlusion(args) -> int:
    from jaxviz import report  # noqa: PLC0415
    stage = report.OcclusionStage(window=args.window, stride=args.stride, n=args.images,
                                  method=args.method)
    return _run(args, stage, args.images)


def parse_target(text: str):
    """--target: "label", "pred", "all", an int K, or "LAYER:C" -> "label", None (the
    predicted class), "all", K, or objectives.channel(LAYER, C)."""
    from jaxviz.core import objectives  # noqa: PLC0415
    t = text.strip()
    if t in ("label", "all"):
        return t
    if t == "pred":
        return None
    if t.lstrip("-").isdigit():
        return int(t)
    layer, sep, c = t.rpartition(":")
    if sep and layer and c.isdigit():
        return objectives.channel(layer, int(c))
    raise argparse.ArgumentTypeError(f"expected label, pred, all, a class index K or "
                                     f"LAYER:CHANNEL (e.g. conv2:3); got {text!r}")


def cmd_attribute(args) -> int:
    from jaxviz import attribution, report  # noqa: PLC0415

    if args.method != "all" and args.method not in attribution.METHODS:
        raise ValueError(f"unknown method {args.method!r}; known: all, "
                         f"{', '.join(attribution.METHODS)}")
    asked = args.target != "label" or args.layer is not None or args.image is not None
    if args.method == "all":
        if asked:
            raise ValueError("--target, --layer and --image explain with one method: pass "
                             "--method NAME (the comparison figure explains the labels)")
        return _run(args, report.AttributionStage(), args.images)
    stage = _OneMethod(args.method, args.target, args.layer)
    if args.image is not None:
        return _run_image(args, stage)
    return _run(args, stage, args.images)


def _run_image(args, stage) -> int:
    """The method on the user's image file, drawn over the original colour image."""
    from jaxviz import report, user_data  # noqa: PLC0415
    t0 = time.perf_counter()
    probe, params, built, x, y, subject = _loaded(args)
    shape = probe.input_shape or tuple(np.shape(x)[1:])
    path = Path(args.image)
    if not path.is_file():
        raise FileNotFoundError(f"--image {str(path)!r}: no such file")
    image = user_data.to_range(user_data.read_image(path, shape)[None], probe.input_range)
    original = user_data.read_original(path)
    inputs = report.Inputs(probe, params, image, np.zeros(1, np.int32),
                           _key(args.seed), x, y, subject)
    stage.original = original
    done = report.run_stage(stage, inputs, _out(args))
    _report_written(args, done.paths, t0)
    return 0


def _key(seed: int):
    import jax  # noqa: PLC0415
    return jax.random.key(seed)


class _OneMethod:
    """One registered attribution method as a stage: attribution_<method>.png, for the
    examples' labels or the --target asked; one column per target ("all": per class, named
    from the data set)."""

    def __init__(self, method: str, target="label", layer: str | None = None):
        self.name, self.target, self.layer = method, target, layer
        self.original = None  # the user's image file, (H, W, 3) uint8, for --image

    def run(self, inputs, earlier):
        import jax  # noqa: PLC0415
        import jax.numpy as jnp  # noqa: PLC0415
        from jaxviz import attribution  # noqa: PLC0415
        method = attribution.get(self.name)
        key = jax.random.fold_in(inputs.key, 2) if method.needs_key else None
        target = inputs.labels if self.target == "label" else self.target
        opts = {} if self.layer is None else {"layer": self.layer}
        res = method(inputs.probe, inputs.params, jnp.asarray(inputs.images), target,
                     key=key, **opts)
        return self._columns(method, res, inputs)

    def _columns(self, method, res, inputs):
        """(images, row labels, {column title: (K, H, W) map}); classes by their names."""
        from jaxviz import attribution  # noqa: PLC0415
        names = inputs.subject.names
        rows = [""] if self.original is not None else names(inputs.labels)
        if "target" in res.extras:  # the predicted classes
            rows = [f"{r} (pred {p})" if r else f"pred {p}"
                    for r, p in zip(rows, names(res.extras["target"]))]
        if self.target == "all":
            return inputs.images, rows, {names([c])[0]: np.asarray(attribution.display_map(
                method, attribution.Attribution(res.map[:, c]))) for c in range(res.map.shape[1])}
        t = self.target
        if isinstance(t, str) or t is None:
            what = "" if t == "label" else "predicted"
        else:
            what = names([t])[0] if isinstance(t, int) else t.name
        title = f"{self.name}: {what}" if what else self.name
        if self.layer is not None:
            title += f" @ {self.layer}"
        m = np.asarray(attribution.display_map(method, res))
        if m.ndim == 4:  # a layer form's (N, h, w, c) map: summed over the layer's channels
            m = m.sum(-1)
        return inputs.images, rows, {title: m}

    def render(self, result, out_dir):
        from jaxviz.plot import attribution as plot_attr  # noqa: PLC0415
        from jaxviz.report import save  # noqa: PLC0415
        from jaxviz.report.attribution_stage import display_signed  # noqa: PLC0415
        from jaxviz import attribution  # noqa: PLC0415
        images, labels, columns = result
        signed = display_signed(attribution.get(self.name))
        if self.original is not None:
            from jaxviz.plot import targets as plot_targets  # noqa: PLC0415
            fig = plot_targets.overlay_figure(self.original, {k: v[0] for k, v in
                                                              columns.items()},
                                              signed=signed, label=labels[0])
        else:
            fig = plot_attr.comparison_figure(images, columns, labels=labels,
                                              signed={k: signed for k in columns})
        return save(fig, out_dir, f"attribution_{self.name}.png")


def cmd_report(args) -> int:
    from jaxviz import report  # noqa: PLC0415
    # What loading says (e.g. stale BatchNorm statistics) belongs on the page too.
    (probe, params, built, x, y, subject), said = report.noted(_loaded, args)
    report.run_report(probe, params, x, y, _out(args), seed=args.seed, small=args.small,
                      subject=subject, log=lambda m: _info(args, m), notes=said)
    return 0


@contextlib.contextmanager
def _warning_lines():
    """Every warning an analysis raises, printed as one `warning: ...` line on stderr as it
    comes (repeats once), whatever --quiet says; the report stages raise theirs again after
    recording them for the page."""
    from jaxviz.report.base import QUIET, warning_line  # noqa: PLC0415
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = warning_line(message, category)
        if not issubclass(category, QUIET) and text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return args.func(args)
        _out(args)  # an unwritable --out fails before any work
        with _warning_lines():
            return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, FloatingPointError,
            RuntimeError, OSError, KeyError) as err:
        if args.debug:
            raise
        print(f"jaxviz {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
