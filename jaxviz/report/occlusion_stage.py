"""The occlusion stage: one set of occluded forward passes scored two ways (logit drop for the
attribution, probability under occlusion), plus the Keras recipe's parity version."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxviz import occlusion as occ
from jaxviz.core.result import Attribution
from jaxviz.plot import occlusion as plot_occ
from jaxviz.report.base import Inputs, Section, save


@dataclasses.dataclass(frozen=True)
class OcclusionResult:
    """images: (n, H, W, C); labels: (n,) the classes explained; logit, prob: the same
    occlusion scored as logit drop and as probability; keras_vis: the recipe's tallies."""
    images: np.ndarray
    labels: np.ndarray
    logit: Attribution
    prob: Attribution
    keras_vis: Attribution  # map: the heat map; extras: prob, predicted, counts
    names: tuple[str, ...] = ()  # the labels' class names
    class_names: tuple[str, ...] = ()  # every class's name, where the data has them

    @property
    def attribution(self) -> np.ndarray:
        """(n, H, W): the true-class logit drop per pixel (the comparison figure's column)."""
        return np.asarray(self.logit.map)


@dataclasses.dataclass(frozen=True)
class OcclusionStage:
    """occlusion.png (window x window patches of 0 every `stride` pixels) and
    occlusion_seed.png (the recipe's size x size cells under a 5*size gray square), for
    the first n examples. method: "exact" or "incremental"."""
    window: int = 4
    stride: int = 2
    size: int = 8
    n: int = 8
    method: str = "exact"
    formats: Sequence[str] = ("png",)
    name: str = "occlusion"

    def run(self, inputs: Inputs, earlier: Mapping) -> OcclusionResult:
        x, y = inputs.images[:self.n], np.asarray(inputs.labels[:self.n])
        # Attribution in logits: a confident model's probabilities saturate, so a probability
        # drop would leave most images blank; the bottom row still shows p(true) under occlusion.
        by = occ.occlusion_by_score(inputs.probe, inputs.params, x, y, scores=("logit", "prob"),
                                    window=self.window, stride=self.stride, method=self.method)
        kv = occ.keras_vis_occlusion(inputs.probe, inputs.params, x, y, size=self.size)
        return OcclusionResult(np.asarray(x), y, by["logit"], by["prob"], kv,
                               tuple(inputs.subject.names(y)), inputs.subject.class_names)

    def render(self, result: OcclusionResult, out_dir: Path) -> list[Path]:
        names = list(result.names) or [int(v) for v in result.labels]
        fig = plot_occ.occlusion_figure(
            result.images, result.attribution, occ.occluded(result.prob), names,
            title=f"occlusion, window {self.window}, stride {self.stride} "
                  f"(attribution: true-class logit drop)")
        paths = save(fig, out_dir, "occlusion.png", self.formats)
        kv = result.keras_vis
        fig = plot_occ.keras_vis_occlusion_figure(result.images, kv.map, kv.extras["predicted"],
                                                  kv.extras["counts"], names, size=self.size,
                                                  class_names=result.class_names)
        return paths + save(fig, out_dir, "occlusion_seed.png", self.formats)

    def metrics(self, result: OcclusionResult) -> dict:
        # Key names kept from earlier runs' metrics.json: "seed_*" are the Keras recipe's.
        kv = result.keras_vis
        correct = np.asarray(kv.extras["predicted"]) == result.labels[:, None, None]
        return {"occlusion": {"mean_prob_drop": float(np.asarray(result.prob.extras["scores"]).mean()),
                              "seed_correct_cells": float(correct.mean()),
                              "seed_counts": np.asarray(kv.extras["counts"]).tolist()}}

    def section(self, result: OcclusionResult, figures) -> Section:
        h, w = result.images.shape[1:3]
        side = 5 * self.size
        hidden = min(1.0, side * side / (h * w))
        return Section(
            "Occlusion sensitivity", "How much the true-class score drops when a patch is "
            f"hidden (red: important). The Keras recipe's figure uses {side}x{side} gray "
            f"patches, which hide up to {hidden:.0%} of a {h}x{w} image.", figures,
            {"window": self.window, "stride": self.stride, "method": self.method,
             "score": "logit (attribution), prob (bottom row)", "keras_vis_size": self.size,
             "keras_vis_patch": 5 * self.size, "images": int(len(result.labels))})
