"""What every stage shares: its inputs, its shape, and how its figures reach the disk.

A stage is an object with
    name: str                                      the log line's and metrics' label
    run(inputs, earlier) -> result                 compute only: arrays and dataclasses
    render(result, out_dir) -> [paths]             figures (jaxviz.plot) written by jaxviz.io
    metrics(result) -> dict                        merged into metrics.json
    section(result, figures) -> Section | None     its part of report.html / report.md
`earlier` maps the names of stages already run to their results (the attribution stage
adds the occlusion stage's map as a column).

`run_stage` records every warning a stage raises (`Done.warnings`, one line each, in
order, no repeats) and raises them again afterwards, so the report shows them beside the
stage's figures and the CLI prints them: no stage hides what a method says.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from jaxviz import io
from jaxviz.plot.core import STYLE


class Section(NamedTuple):
    """One part of the report page. notes: {figure path: warning lines shown beside that
    figure}, "" for the section as a whole."""
    title: str
    caption: str  # what to look at, two lines at most
    figures: Sequence[str]  # paths relative to the report's directory
    settings: dict
    notes: Mapping[str, Sequence[str]] = MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class Subject:
    """What the report is about, in the words its pages use. model: e.g. "colour_cnn from
    my_models.py"; data: e.g. "folder:shapes, 40 validation images"; class_names: one per
    class index where the data has them (an image folder's subfolders), else ()."""
    model: str = "the model"
    data: str = "the validation images"
    class_names: tuple[str, ...] = ()

    def name(self, c) -> str:
        """Class index c -> its name, or the index as text where there is no name."""
        c = int(c)
        return self.class_names[c] if 0 <= c < len(self.class_names) else str(c)

    def names(self, classes) -> list[str]:
        return [self.name(c) for c in np.asarray(classes).ravel()]


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the stages read. images: (K, H, W, C) float32, the examples shown; labels: (K,)
    int, the classes explained; key: a PRNG key (each stage folds in its own number);
    x_val, y_val: (N, H, W, C) and (N,), the whole validation set (accuracy only);
    subject: the model's and data's names and the class names, for titles and labels."""
    probe: Any
    params: Any
    images: np.ndarray
    labels: np.ndarray
    key: jax.Array
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    subject: Subject = Subject()


class Stage(Protocol):
    name: str

    def run(self, inputs: Inputs, earlier: Mapping[str, Any]) -> Any: ...

    def render(self, result: Any, out_dir: Path) -> list[Path]: ...

    def metrics(self, result: Any) -> dict: ...

    def section(self, result: Any, figures: list[str]) -> Section | None: ...


def pick_examples(x, y, n: int):
    """One example per class first (in class order), then the following ones.
    x: (N, H, W, C), y: (N,) -> the first n of that order."""
    x, y = np.asarray(x), np.asarray(y)
    firsts = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)]
    taken = set(firsts)
    idx = (firsts + [i for i in range(len(y)) if i not in taken])[:n]
    return x[idx], y[idx]


def inputs_for(probe, params, x, y, *, n: int, seed: int = 0,
               subject: Subject | None = None) -> Inputs:
    """Inputs with the n examples `pick_examples` chooses from (x, y)."""
    xs, ys = pick_examples(x, y, n)
    return Inputs(probe, params, xs, ys, jax.random.key(seed), x, y, subject or Subject())


def save(fig, out_dir, name: str, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write fig as out_dir/name in every format (jaxviz's style), then close it."""
    return io.save_figure(fig, Path(out_dir) / name, formats=formats, rc=STYLE)


def pngs(out_dir, paths) -> list[str]:
    """The PNG figures among paths, relative to the report's directory."""
    out = Path(out_dir).resolve()
    return [str(Path(p).resolve().relative_to(out)) for p in paths if str(p).endswith(".png")]


# Library-internal deprecations (JAX, Flax, Orbax) say nothing about the analysis: they go
# to Python's own filters, not into the report.
QUIET = (DeprecationWarning, PendingDeprecationWarning)


def warning_line(message, category=None) -> str:
    """One warning as one line: "<Category>: <message>"."""
    category = category or type(message)
    text = " ".join(str(message).split())
    return f"{category.__name__}: {text}"


def noted(fn: Callable, *args, **kwargs) -> tuple[Any, tuple[str, ...]]:
    """fn(*args, **kwargs) with its warnings recorded: (value, their lines, in order, no
    repeats). They are raised again afterwards, so an outer recorder (run_stage, the CLI)
    sees them too."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = fn(*args, **kwargs)
    finally:  # an error still lets what was said before it out
        lines = []
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            line = warning_line(w.message, w.category)
            if not issubclass(w.category, QUIET) and line not in lines:
                lines.append(line)
    return value, tuple(lines)


class Done(NamedTuple):
    """result: the stage's; paths: its files; seconds: run and render; warnings: the lines
    of every warning raised while it ran or rendered."""
    result: Any
    paths: list[Path]
    seconds: float
    warnings: tuple[str, ...] = ()


def run_stage(stage, inputs: Inputs, out_dir, earlier: Mapping[str, Any] | None = None) -> Done:
    """Run then render one stage into out_dir; the time covers both."""
    def both():
        result = stage.run(inputs, earlier or {})
        return result, list(stage.render(result, Path(out_dir)))

    t0 = time.perf_counter()
    (result, paths), lines = noted(both)
    return Done(result, paths, time.perf_counter() - t0, lines)
