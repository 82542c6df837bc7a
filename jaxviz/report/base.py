"""What every stage shares: its inputs, its shape, and how its figures reach the disk.

A stage is an object with
    name: str                                      the log line's and metrics' label
    run(inputs, earlier) -> result                 compute only: arrays and dataclasses
    render(result, out_dir) -> [paths]             figures (jaxviz.plot) written by jaxviz.io
    metrics(result) -> dict                        merged into metrics.json
    section(result, figures) -> Section | None     its part of report.html / report.md
`earlier` maps the names of stages already run to their results (the attribution stage
adds the occlusion stage's map as a column).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from jaxviz import io
from jaxviz.plot.core import STYLE


class Section(NamedTuple):
    """One part of the report page."""
    title: str
    caption: str  # what to look at, two lines at most
    figures: Sequence[str]  # paths relative to the report's directory
    settings: dict


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the stages read. images: (K, H, W, C) float32, the examples shown; labels: (K,)
    int, the classes explained; key: a PRNG key (each stage folds in its own number);
    x_val, y_val: (N, H, W, C) and (N,), the whole validation set (accuracy only)."""
    probe: Any
    params: Any
    images: np.ndarray
    labels: np.ndarray
    key: jax.Array
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


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


def inputs_for(probe, params, x, y, *, n: int, seed: int = 0) -> Inputs:
    """Inputs with the n examples `pick_examples` chooses from (x, y)."""
    xs, ys = pick_examples(x, y, n)
    return Inputs(probe, params, xs, ys, jax.random.key(seed), x, y)


def save(fig, out_dir, name: str, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write fig as out_dir/name in every format (jaxviz's style), then close it."""
    return io.save_figure(fig, Path(out_dir) / name, formats=formats, rc=STYLE)


def pngs(out_dir, paths) -> list[str]:
    """The PNG figures among paths, relative to the report's directory."""
    out = Path(out_dir).resolve()
    return [str(Path(p).resolve().relative_to(out)) for p in paths if str(p).endswith(".png")]


class Done(NamedTuple):
    result: Any
    paths: list[Path]
    seconds: float


def run_stage(stage, inputs: Inputs, out_dir, earlier: Mapping[str, Any] | None = None) -> Done:
    """Run then render one stage into out_dir; the time covers both."""
    t0 = time.perf_counter()
    result = stage.run(inputs, earlier or {})
    paths = list(stage.render(result, Path(out_dir)))
    return Done(result, paths, time.perf_counter() - t0)
