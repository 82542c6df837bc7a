"""The metric registry: one record per evaluation metric, as `attribution.registry` is for
methods. Every consumer (the method x metric table, the report, the benchmark, the shared
metric tests) iterates over `METRICS`.

A metric is a pure, batched function
    metric(fn, params, images, target, attributions, *, key=None, chunk_size=None, **options)
        -> MetricResult(scores: (N,) float32, curve: (N, S) or None)
where `attributions` is (N, H, W, C) or (N, H, W) (broadcast over channels), `fn(params, x)
-> (N, K)` logits (or a Probe), and `chunk_size` bounds how many forward passes run at once.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax

from jaxviz.core.records import Records

FAMILIES = ("faithfulness", "robustness", "randomisation", "complexity", "axiomatic",
            "localisation")
DIRECTIONS = ("higher", "lower")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MetricResult:
    """scores: (N,) one number per image; curve: (N, S) where the metric has one (e.g.
    deletion's probability after each step), else None."""
    scores: jax.Array
    curve: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric. direction: "higher" or "lower" is better; family: one of FAMILIES;
    paper: short citation; needs_key: takes key=; needs_method: takes method= (an
    attribution method re-run on perturbed inputs: robustness); needs_masks: takes masks=
    (localisation: (N, H, W) bool ground truth); defaults / quick: options for the table and
    for tests."""
    name: str
    fn: Callable
    direction: str
    family: str
    paper: str = ""
    needs_key: bool = False
    needs_method: bool = False
    needs_masks: bool = False
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}; got {self.direction!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}; got {self.family!r}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "quick", MappingProxyType(dict(self.quick)))

    @property
    def arrow(self) -> str:
        return "↑" if self.direction == "higher" else "↓"


METRICS: dict[str, Metric] = Records("metric", Metric, "evaluate.Metric")


def register(metric: Metric, *, replace: bool = False) -> Metric:
    """Add `metric` to METRICS (replace=True to overwrite a name). Returns it."""
    return METRICS.register(metric, replace=replace)


def unregister(name: str) -> None:
    METRICS.unregister(name)


def get(name: str) -> Metric:
    return METRICS.lookup(name)
