"""The attribution stage: every registered method side by side, and the randomization
check (Adebayo et al. 2018) that says which of them explain the model.

The columns come from `jaxviz.attribution.METHODS`: a method registered anywhere appears
here with no edit. IG's completeness figure comes from IG's own delta.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import attribution as attr
from jaxviz.attribution import cam, registry
from jaxviz.plot import attribution as plot_attribution
from jaxviz.report.base import Inputs, Section, save

# The report's key for this stage: jax.random.fold_in(inputs.key, KEY_SALT).
KEY_SALT = 2
SANITY_METHODS = ("saliency", "guided_backprop", "grad_cam")


@dataclasses.dataclass(frozen=True)
class AttributionResult:
    """images: (K, H, W, C); labels: (K,); columns: {method label: (K, H, W) display map};
    cam_layer: the CAMs' layer; ig_delta_rel: max over images of |IG delta| / |f(x) - f(b)|
    (None without IG); randomization: cascading_randomization's result as lists."""
    images: np.ndarray
    labels: np.ndarray
    columns: Mapping[str, np.ndarray]
    cam_layer: str
    ig_delta_rel: float | None
    randomization: Mapping[str, list]


def ig_delta_rel(res: registry.Attribution) -> float:
    """max |delta| / |f(x) - f(b)|, with f(x) - f(b) = sum(attr) - delta from IG itself."""
    delta = np.asarray(res.extras["delta"])
    gap = np.asarray(res.map.sum(axis=(1, 2, 3))) - delta
    return float((np.abs(delta) / np.maximum(np.abs(gap), 1e-12)).max())


def compute(probe, params, images, labels, key, *, methods: Sequence[str] | None = None,
            options: Mapping[str, Mapping] | None = None,
            precomputed: Mapping[str, registry.Attribution] | None = None,
            sanity_methods: Sequence[str] = SANITY_METHODS) -> AttributionResult:
    """Every method in `methods` (default: all registered) explaining `labels`.

    images: (K, H, W, C); key: a PRNG key (noise, re-initialisation); options: {method:
    {option: value}}; precomputed: results an earlier stage has (not computed again)."""
    names = list(registry.METHODS) if methods is None else list(methods)
    precomputed = {k: v for k, v in (precomputed or {}).items() if k in names}
    todo = [n for n in names if n not in precomputed]
    x, y = jnp.asarray(images, jnp.float32), np.asarray(labels)
    k_maps, k_rand = jax.random.split(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a blank CAM is drawn blank
        results = registry.compare(probe, params, x, y, key=k_maps, methods=todo, options={
            k: v for k, v in (options or {}).items() if k in todo})
    results.update(precomputed)
    columns = {registry.get(n).label: np.asarray(registry.display_map(registry.get(n), results[n]))
               for n in names}
    ig = results.get("integrated_gradients")
    rand = attr.cascading_randomization(probe, params, x, y, key=k_rand,
                                        methods=tuple(sanity_methods))
    return AttributionResult(
        np.asarray(x), y, columns, cam.resolve_layer(probe, None, x.shape),
        None if ig is None else ig_delta_rel(ig),
        {k: (list(v) if k == "layers" else [float(a) for a in v]) for k, v in rand.items()})


@dataclasses.dataclass(frozen=True)
class AttributionStage:
    """attribution_comparison.png and attribution_sanity.png.
    n_samples: SmoothGrad's noisy copies; n_steps: IG's path points."""
    # The seed recipe's methods: what a smoke run (`--small`) draws; the full registry is
    # the default.
    SEED_METHODS: ClassVar[tuple[str, ...]] = (
        "saliency", "guided_backprop", "grad_cam", "integrated_gradients", "smoothgrad",
        "occlusion")
    n_samples: int = 50
    n_steps: int = 64
    methods: tuple[str, ...] | None = None  # None: every registered method
    quick: bool = False  # each method with its registered quick options (a smoke run)
    formats: tuple[str, ...] = ("png",)
    name: str = "attribution"

    def run(self, inputs: Inputs, earlier: Mapping) -> AttributionResult:
        occ = earlier.get("occlusion")
        pre = {} if occ is None else {"occlusion": registry.Attribution(
            jnp.asarray(occ.attribution), {})}
        return compute(inputs.probe, inputs.params, inputs.images, inputs.labels,
                       jax.random.fold_in(inputs.key, KEY_SALT), methods=self.methods,
                       options=self._options(), precomputed=pre)

    def _options(self) -> dict:
        quick = {n: dict(m.quick) for n, m in registry.METHODS.items() if self.quick}
        quick.setdefault("smoothgrad", {})["n_samples"] = self.n_samples
        quick.setdefault("integrated_gradients", {})["n_steps"] = self.n_steps
        names = registry.METHODS if self.methods is None else self.methods
        return {k: v for k, v in quick.items() if k in names}

    def render(self, result: AttributionResult, out_dir: Path) -> list[Path]:
        cams = tuple(m.label for m in registry.METHODS.values() if m.kind == "layer")
        fig = plot_attribution.comparison_figure(
            result.images, result.columns, labels=[int(v) for v in result.labels], overlay=cams,
            title=f"attribution for the true class (CAMs at {result.cam_layer!r})")
        return (save(fig, out_dir, "attribution_comparison.png", self.formats)[:1]
                + save(plot_attribution.randomization_figure(result.randomization), out_dir,
                       "attribution_sanity.png", self.formats)[:1])

    def metrics(self, result: AttributionResult) -> dict:
        return {"attribution": {"ig_delta_rel_max": result.ig_delta_rel,
                                "cam_layer": result.cam_layer, "methods": list(result.columns),
                                "randomization_rank_correlation": dict(result.randomization)}}

    def section(self, result: AttributionResult, figures) -> Section:
        return Section(
            "Attribution methods", "Rows are validation digits; columns are every registered "
            "attribution method. The second figure is Adebayo et al.'s sanity check: maps that "
            "don't change when the weights are re-initialised from the top do not explain "
            "the model.", figures,
            {"IG": f"{self.n_steps} Gauss-Legendre steps, zero baseline",
             "SmoothGrad": f"{self.n_samples} samples, sigma 15% of range",
             "CAM layer": result.cam_layer})
