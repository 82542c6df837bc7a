"""The attribution stage: every registered method side by side, and the randomization
check (Adebayo et al. 2018) that says which of them explain the model.

The columns come from `jaxviz.attribution.METHODS`: a method registered anywhere appears
here with no edit. IG's completeness figure comes from IG's own delta.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import attribution as attr
from jaxviz.attribution import cam, registry
from jaxviz.plot import attribution as plot_attribution
from jaxviz.report.base import Inputs, Section, noted, save

# The report's key for this stage: jax.random.fold_in(inputs.key, KEY_SALT).
KEY_SALT = 2
SANITY_METHODS = ("saliency", "guided_backprop", "grad_cam")
# The comparison figure's families, in page order. A method's family follows from its kind
# (CAMs, perturbation) or, for pixel maps, from how its gradient is formed; a method
# registered elsewhere lands in "gradient" (pixel) with no edit here.
FAMILIES = ("gradient", "path", "propagation", "CAM", "perturbation")
PATH_METHODS = frozenset({"integrated_gradients", "gradient_shap", "expected_gradients"})
PROPAGATION_METHODS = frozenset({"guided_backprop", "deconvnet", "guided_grad_cam", "deeplift",
                                 "deeplift_shap", "lrp"})
# Methods per figure: 10 tiles of 1.05 in at 120 dpi are ~1,260 px, readable at the page's
# 1,100 px; a registry with more columns is split by family (a larger family wraps).
MAX_COLUMNS = 9


def family(method: registry.Method) -> str:
    """The comparison figure's family of a registered method (one of FAMILIES)."""
    if method.kind == "layer":
        return "CAM"
    if method.kind == "occlusion":
        return "perturbation"
    if method.name in PATH_METHODS:
        return "path"
    return "propagation" if method.name in PROPAGATION_METHODS else "gradient"


def display_signed(method: registry.Method) -> bool:
    """Whether the drawn map keeps a sign: the method's `signed`, unless its channels are
    reduced by max |.| (then the drawn map is >= 0)."""
    return method.signed and not (method.kind == "pixel" and method.channel_reduce == "max_abs")


@dataclasses.dataclass(frozen=True)
class AttributionResult:
    """images: (K, H, W, C); labels: (K,); columns: {method label: (K, H, W) display map};
    cam_layer: the CAMs' layer; ig_delta_rel: max over images of |IG delta| / |f(x) - f(b)|
    (None without IG); randomization: cascading_randomization's result as lists;
    signed, families: {label: the drawn map's sign, the method's family}; notes: {label:
    the warnings that method raised}, "sanity" for the randomization check's; row_names:
    the rows' class names."""
    images: np.ndarray
    labels: np.ndarray
    columns: Mapping[str, np.ndarray]
    cam_layer: str
    ig_delta_rel: float | None
    randomization: Mapping[str, list]
    signed: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    families: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    row_names: tuple[str, ...] = ()  # the rows' class names; () -> the class indices


def ig_delta_rel(res: registry.Attribution) -> float:
    """max |delta| / |f(x) - f(b)|, with f(x) - f(b) = sum(attr) - delta from IG itself."""
    delta = np.asarray(res.extras["delta"])
    gap = np.asarray(res.map.sum(axis=(1, 2, 3))) - delta
    return float((np.abs(delta) / np.maximum(np.abs(gap), 1e-12)).max())


def _each_noted(probe, params, x, y, key, names, options) -> tuple[dict, dict]:
    """registry.compare one method at a time (its key depends on its name only), each
    method's warnings kept under its name: ({name: Attribution}, {name: lines})."""
    results, notes = {}, {}
    for n in names:
        out, lines = noted(registry.compare, probe, params, x, y, key=key, methods=[n],
                           options={k: v for k, v in options.items() if k == n})
        results.update(out)
        if lines:
            notes[n] = lines
    return results, notes


def compute(probe, params, images, labels, key, *, methods: Sequence[str] | None = None,
            options: Mapping[str, Mapping] | None = None,
            precomputed: Mapping[str, registry.Attribution] | None = None,
            sanity_methods: Sequence[str] = SANITY_METHODS) -> AttributionResult:
    """Every method in `methods` (default: all registered) explaining `labels`.

    images: (K, H, W, C); key: a PRNG key (noise, re-initialisation); options: {method:
    {option: value}}; precomputed: results an earlier stage has (not computed again).
    Every warning a method raises is kept in the result's notes and raised again."""
    names = list(registry.METHODS) if methods is None else list(methods)
    precomputed = {k: v for k, v in (precomputed or {}).items() if k in names}
    todo = [n for n in names if n not in precomputed]
    x, y = jnp.asarray(images, jnp.float32), np.asarray(labels)
    k_maps, k_rand = jax.random.split(key)
    results, by_name = _each_noted(probe, params, x, y, k_maps, todo, options or {})
    results.update(precomputed)
    meths = {n: registry.get(n) for n in names}
    columns = {m.label: np.asarray(registry.display_map(m, results[n])) for n, m in meths.items()}
    ig = results.get("integrated_gradients")
    rand, sanity = noted(attr.cascading_randomization, probe, params, x, y, key=k_rand,
                         methods=tuple(sanity_methods))
    notes = {meths[n].label: v for n, v in by_name.items()}
    return AttributionResult(
        np.asarray(x), y, columns, cam.resolve_layer(probe, None, x.shape),
        None if ig is None else ig_delta_rel(ig),
        {k: (list(v) if k == "layers" else [float(a) for a in v]) for k, v in rand.items()},
        signed={m.label: display_signed(m) for m in meths.values()},
        families={m.label: family(m) for m in meths.values()},
        notes={**notes, **({"sanity": sanity} if sanity else {})})


def panels(result: AttributionResult) -> list[tuple[str, str, list[str]]]:
    """The comparison figures: [(file name, families in words or "", method labels)]. Up
    to MAX_COLUMNS methods: one figure, attribution_comparison.png; more: split by family
    in FAMILIES order, neighbours sharing a figure while they fit in MAX_COLUMNS
    (attribution_gradient_path.png, attribution_cam.png, ...)."""
    labels = list(result.columns)
    if len(labels) <= MAX_COLUMNS:
        return [("attribution_comparison.png", "", labels)]
    fam = {lab: result.families.get(lab, "gradient") for lab in labels}
    groups: list[tuple[list[str], list[str]]] = []
    for f in FAMILIES:
        members = [lab for lab in labels if fam[lab] == f]
        if not members:
            continue
        if groups and len(groups[-1][1]) + len(members) <= MAX_COLUMNS:
            groups[-1][0].append(f)
            groups[-1][1].extend(members)
        else:
            groups.append(([f], members))
    return [(f"attribution_{'_'.join(f.lower() for f in fams)}.png", " and ".join(fams), labs)
            for fams, labs in groups]


@dataclasses.dataclass(frozen=True)
class AttributionStage:
    """The comparison figure(s) (see `panels`) and attribution_sanity.png.
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
        result = compute(inputs.probe, inputs.params, inputs.images, inputs.labels,
                         jax.random.fold_in(inputs.key, KEY_SALT), methods=self.methods,
                         options=self._options(), precomputed=pre)
        return dataclasses.replace(result, row_names=tuple(inputs.subject.names(result.labels)))

    def _options(self) -> dict:
        quick = {n: dict(m.quick) for n, m in registry.METHODS.items() if self.quick}
        quick.setdefault("smoothgrad", {})["n_samples"] = self.n_samples
        quick.setdefault("integrated_gradients", {})["n_steps"] = self.n_steps
        names = registry.METHODS if self.methods is None else self.methods
        return {k: v for k, v in quick.items() if k in names}

    def render(self, result: AttributionResult, out_dir: Path) -> list[Path]:
        cams = tuple(lab for lab, f in result.families.items() if f == "CAM")
        rows = list(result.row_names) or [str(int(v)) for v in result.labels]
        paths = []
        for fname, fam, labels in panels(result):
            # A method that warned is starred; its note sits beside the figure.
            shown = {(f"{lab} *" if lab in result.notes else lab): result.columns[lab]
                     for lab in labels}
            signed = {(f"{lab} *" if lab in result.notes else lab): result.signed.get(lab, True)
                      for lab in labels}
            over = tuple(f"{lab} *" if lab in result.notes else lab for lab in cams)
            what = f"{fam} methods" if fam else "attribution"
            fig = plot_attribution.comparison_figure(
                result.images, shown, signed=signed, labels=rows,
                overlay=over, max_columns=MAX_COLUMNS,
                title=f"{what} for the true class" + (
                    f" (CAMs at {result.cam_layer!r})" if fam == "" or "CAM" in fam else ""))
            paths += save(fig, out_dir, fname, self.formats)[:1]
        return paths + save(plot_attribution.randomization_figure(result.randomization),
                            out_dir, "attribution_sanity.png", self.formats)[:1]

    def metrics(self, result: AttributionResult) -> dict:
        return {"attribution": {"ig_delta_rel_max": result.ig_delta_rel,
                                "cam_layer": result.cam_layer, "methods": list(result.columns),
                                "randomization_rank_correlation": dict(result.randomization),
                                "warnings": {k.replace("\n", " "): list(v)
                                             for k, v in result.notes.items()}}}

    def section(self, result: AttributionResult, figures) -> Section:
        notes = {}
        for fname, _, labels in panels(result):
            lines = [f"{lab.replace(chr(10), ' ')} *: {n}" for lab in labels
                     for n in result.notes.get(lab, ())]
            notes.update({f: lines for f in figures if Path(f).name == fname and lines})
        sanity = [f for f in figures if Path(f).name == "attribution_sanity.png"]
        if sanity and result.notes.get("sanity"):
            notes[sanity[0]] = list(result.notes["sanity"])
        return Section(
            "Attribution methods", "Rows are validation images (their class on the left); "
            "columns are every registered attribution method, by family. Signed methods: "
            "blue negative, red positive, symmetric about 0; unsigned: from their minimum "
            "to maximum; each tile's range is under it. The last figure is Adebayo et al.'s "
            "sanity check: maps that don't change when the weights are re-initialised from "
            "the top do not explain the model.", figures,
            {"IG": f"{self.n_steps} Gauss-Legendre steps, zero baseline",
             "SmoothGrad": f"{self.n_samples} samples, sigma 15% of range",
             "CAM layer": result.cam_layer}, notes)
