"""The whole report: every stage on a trained model, then metrics.json, report.html, report.md.

Used by `python -m experiments.mnist_seed` (after training) and `jaxviz report`. Each stage
logs one line: its name, seconds, where its files went. Every warning a stage raises is
passed to `warn` (one line each), written under "warnings" in metrics.json and shown as a
note beside the stage's figures.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from jaxviz import io
from jaxviz.report.attribution_stage import AttributionStage
from jaxviz.report.base import Section, Subject, inputs_for, pngs, run_stage
from jaxviz.report.evaluate_stage import EvaluateStage
from jaxviz.report.maximize_stage import MaximizeStage
from jaxviz.report.model_stages import (
    AccuracyStage, ArchitectureStage, FeatureMapsStage, FiltersStage)
from jaxviz.report.occlusion_stage import OcclusionStage
from jaxviz.report.page import write_report

# The Keras recipe on the bundled digits: what `make demo` reports on.
MNIST_SEED = Subject(model="the Keras recipe's MNIST CNN", data="the bundled MNIST digits")


def title(subject: Subject) -> str:
    return f"jaxviz: inside {subject.model}"


def intro(subject: Subject) -> str:
    classes = (f" Classes: {', '.join(subject.class_names)}." if subject.class_names else "")
    return (f"Every figure below was produced by pure, jitted JAX functions on "
            f"{subject.data}; settings are listed under each section.{classes}")


def default_stages(small: bool = False, *, accuracy: bool = True) -> list:
    """The report's stages in order; small: few steps and samples, the seed's six
    attribution methods (a quick look)."""
    return [*([AccuracyStage()] if accuracy else []), ArchitectureStage(), FiltersStage(),
            FeatureMapsStage(n_images=3),
            MaximizeStage(steps=16 if small else 256, max_channels=8 if small else 32),
            OcclusionStage(window=4, stride=2),
            AttributionStage(n_samples=16 if small else 50, quick=small,
                             methods=AttributionStage.SEED_METHODS if small else None),
            EvaluateStage(**(EvaluateStage.SMALL if small else {}))]


def run_report(probe, params, x_val, y_val, out_dir, *, seed: int = 0, small: bool = False,
               accuracy: float | None = None, train_seconds: float | None = None,
               stages: Sequence | None = None, subject: Subject | None = None,
               log: Callable[[str], None] = print,
               warn: Callable[[str], None] | None = None, notes: Sequence[str] = ()) -> dict:
    """Run every stage on (probe, params) and write its figures, metrics.json and the report.

    x_val: (N, H, W, C) float32 validation images, y_val: (N,) labels; the examples shown
    are one per class first (8, or 4 when small). seed: the PRNG seed of every stage's key.
    accuracy: the validation accuracy when already known (the accuracy stage is skipped).
    stages: default `default_stages(small)`. subject: the model's and data's names and the
    class names (default: plain words, class indices). warn: called with each warning line
    of each stage (default: none; Python's own warning display shows them). notes: warning
    lines raised before the stages (loading the model and data), shown first.
    Returns the metrics written to metrics.json.
    """
    out = io.ensure_dir(out_dir, "out_dir")
    subject = subject or Subject()
    inputs = inputs_for(probe, params, x_val, y_val, n=4 if small else 8, seed=seed,
                        subject=subject)
    if stages is None:
        stages = default_stages(small, accuracy=accuracy is None)
    metrics = {} if accuracy is None else {"val_accuracy": accuracy}
    times, sections, done = {}, [], {}
    said = {"load": list(notes)} if notes else {}
    if notes:
        sections.append(Section("Warnings while loading the model and data", "", [], {},
                                {"": list(notes)}))
    for stage in stages:
        d = run_stage(stage, inputs, out, done)
        done[stage.name] = d.result
        times[stage.name] = round(d.seconds, 2)
        log(f"[{stage.name}] {times[stage.name]:.1f}s -> {out}")
        for line in d.warnings if warn is not None else ():
            warn(f"[{stage.name}] {line}")
        if d.warnings:
            said[stage.name] = list(d.warnings)
        metrics.update(stage.metrics(d.result))
        section = stage.section(d.result, pngs(out, d.paths))
        sections.append(with_notes(section, d.warnings, stage.name))
    metrics["warnings"] = said
    metrics["stage_seconds"] = times
    if train_seconds is not None:
        metrics["stage_seconds"]["train"] = round(train_seconds, 2)
    io.write_json(out / "metrics.json", metrics)
    write_report(out, title(subject), intro(subject), _table(metrics, times),
                 [s for s in sections if s is not None])
    log(f"[report] {out / 'report.html'}")
    return metrics


def with_notes(section: Section | None, lines, stage_name: str) -> Section | None:
    """The section with every warning line its stage raised that it does not show yet as a
    section-wide note; a stage with no section gets one holding just its warnings."""
    if not lines:
        return section
    if section is None:
        section = Section(f"Warnings from the {stage_name} stage", "", [], {})
    shown = [n for ns in section.notes.values() for n in ns]
    new = [w for w in lines if not any(w in n for n in shown)]
    if not new:
        return section
    notes = dict(section.notes)
    notes[""] = [*notes.get("", ()), *new]
    return section._replace(notes=notes)


def _table(metrics: dict, times: dict) -> list[list]:
    table = [["quantity", "value"]]
    if "val_accuracy" in metrics:
        table.append(["validation accuracy", f"{metrics['val_accuracy']:.4f}"])
    if "attribution" in metrics:
        table.append(["IG completeness |delta| / |f(x) - f(b)| (max over images)",
                      f"{metrics['attribution']['ig_delta_rel_max']:.2e}"])
    hits = metrics.get("maximize", {}).get("classified_as_target")
    if hits is not None:
        table.append(["classes whose maximizing image is classified as that class",
                      f"{hits} / {metrics['maximize'].get('units')}"])
    return table + [[f"time: {k} (s)", f"{v:.1f}"] for k, v in times.items()]
