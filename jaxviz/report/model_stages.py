"""Stages that show the model itself: validation accuracy, the architecture, the conv
filters and the feature maps of a few examples."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxviz import arch, filters, io
from jaxviz.plot.arch import plot_architecture, plot_feature_maps, plot_filters
from jaxviz.report.base import Inputs, Section, save


@dataclasses.dataclass(frozen=True)
class AccuracyStage:
    """Top-1 accuracy on inputs.x_val / y_val, `batch` images per forward pass."""
    batch: int = 500
    name: str = "accuracy"

    def run(self, inputs: Inputs, earlier: Mapping) -> float:
        if inputs.x_val is None or inputs.y_val is None:
            raise ValueError("the accuracy stage needs inputs.x_val and inputs.y_val; got None")
        fn = jax.jit(inputs.probe)
        x, y = inputs.x_val, np.asarray(inputs.y_val)
        correct = sum(int((np.asarray(fn(inputs.params, x[i:i + self.batch])).argmax(-1)
                           == y[i:i + self.batch]).sum()) for i in range(0, len(x), self.batch))
        return correct / len(x)

    def render(self, result: float, out_dir: Path) -> list[Path]:
        return []

    def metrics(self, result: float) -> dict:
        return {"val_accuracy": result}

    def section(self, result, figures) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class ArchitectureStage:
    """summary.txt and architecture.png/.svg, traced for one example."""
    name: str = "architecture"

    def run(self, inputs: Inputs, earlier: Mapping) -> tuple[arch.Summary, arch.Graph]:
        return arch.summary_and_graph(inputs.probe, inputs.images[:1], inputs.params)

    def render(self, result, out_dir: Path) -> list[Path]:
        s, g = result
        text = io.write_text(Path(out_dir) / "summary.txt", s.text() + "\n")
        title = f"{s.total_params:,} params, {s.total_flops / 1e6:.4g} MFLOP for {s.input_shape}"
        return [text, *save(plot_architecture(g, title=title), out_dir, "architecture.png",
                            ("png", "svg"))]

    def metrics(self, result) -> dict:
        return {"params": result[0].total_params, "forward_flops": result[0].total_flops}

    def section(self, result, figures) -> Section:
        return Section("Architecture", "Layer table (output shapes, parameters, FLOPs) and the "
                       "data-flow diagram traced from the program, the pure-matplotlib "
                       "counterpart of Keras' plot_model.", figures,
                       {"input": tuple(result[0].input_shape[1:])})


@dataclasses.dataclass(frozen=True)
class LayerFilters:
    """tiles: (out, kh, kw) for one input channel ("channel") or (out', in', kh, kw) ("mosaic");
    kernel_shape: the layer's full (kh, kw, in, out)."""
    layer: str
    kernel_shape: tuple
    mode: str
    tiles: np.ndarray


@dataclasses.dataclass(frozen=True)
class FiltersStage:
    """filters_<layer>.png for every layer with a 2-D conv kernel. One input channel: its
    kernels, one tile each; more: an out x in mosaic (16 x 16 at most)."""
    diverging: bool = True
    name: str = "filters"

    def run(self, inputs: Inputs, earlier: Mapping) -> list[LayerFilters]:
        probe, params = arch.as_probe(inputs.probe, inputs.params, "probe")
        found = []
        for layer in filters.conv_layers(probe, params, np.shape(inputs.images)):
            k = filters.conv_kernel(probe, params, layer)
            mode = "channel" if k.shape[2] == 1 else "mosaic"
            found.append(LayerFilters(layer, tuple(k.shape), mode,
                                      np.asarray(filters.filter_grid(probe, params, layer, mode))))
        return found

    def render(self, result: list[LayerFilters], out_dir: Path) -> list[Path]:
        paths = []
        for f in result:
            kh, kw, n_in, n_out = f.kernel_shape
            title = f"{f.layer}: {n_out} filters {kh}x{kw}" + (
                "" if f.mode == "channel" else f", first {f.tiles.shape[0]} x "
                                               f"{f.tiles.shape[1]} of {n_out} out x {n_in} in")
            fig = plot_filters(f.tiles, title=title, diverging=self.diverging)
            paths += save(fig, out_dir, f"filters_{f.layer}.png")
        return paths

    def metrics(self, result) -> dict:
        return {}

    def section(self, result, figures) -> Section:
        return Section("Convolution filters", "Each tile is one kernel scaled to its own range; "
                       "first-layer kernels look like small edge and blob detectors.", figures, {})


@dataclasses.dataclass(frozen=True)
class FeatureMaps:
    """images: (n, H, W, C); labels: (n,); acts: {layer: (n, h, w, c)}; names: the
    labels' class names."""
    images: np.ndarray
    labels: np.ndarray
    acts: dict
    names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FeatureMapsStage:
    """feature_maps_<layer>.png for the first n_images examples. layers: default every
    layer with a 2-D conv kernel and an (N, H, W, C) output."""
    n_images: int = 3
    layers: Sequence[str] | None = None
    name: str = "feature_maps"

    def run(self, inputs: Inputs, earlier: Mapping) -> FeatureMaps:
        probe, params = arch.as_probe(inputs.probe, inputs.params, "probe")
        x = np.asarray(inputs.images[:self.n_images], np.float32)
        layers = self.layers
        if layers is None:
            shapes = probe.layer_shapes(x.shape)
            layers = [n for n in filters.conv_layers(probe, params, x.shape)
                      if len(shapes[n]) == 4]
        acts = filters.feature_maps(probe, params, x, layers) if layers else {}
        labels = np.asarray(inputs.labels[:len(x)])
        return FeatureMaps(x, labels, {k: np.asarray(v) for k, v in acts.items()},
                           tuple(inputs.subject.names(labels)))

    def render(self, result: FeatureMaps, out_dir: Path) -> list[Path]:
        labels = list(result.names) or [str(int(v)) for v in result.labels]
        return [p for layer, a in result.acts.items() for p in save(
            plot_feature_maps(a, layer, images=result.images, labels=labels), out_dir,
            f"feature_maps_{layer}.png")]

    def metrics(self, result) -> dict:
        return {}

    def section(self, result: FeatureMaps, figures) -> Section:
        names = list(result.names) or result.labels.tolist()
        return Section("Feature maps", f"Activations of each conv layer for {len(names)} "
                       "validation images: early channels respond to edges and colours, "
                       "later ones to larger parts.", figures, {"classes": names})
