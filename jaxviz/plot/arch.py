"""Figures that show the model itself: the architecture diagram, filter grids, feature maps.

The diagram is pure matplotlib (no Graphviz): a layered layout in which every node sits one
row below its deepest producer, so chains run straight down; an edge that skips rows is
routed through reserved slots beside the boxes it passes, so no line crosses a box.
"""
from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

from jaxviz.plot.core import DIVERGING, GRAY, SEQUENTIAL, new_figure

_FONT = 7.0  # points; text is monospace so its width is known before drawing
_CHAR_W = 0.61 * _FONT / 72  # inches per character (DejaVu Sans Mono advance is 0.602 em)
_LINE_H = 1.35 * _FONT / 72
_PAD_X, _PAD_Y, _GAP_X, _GAP_Y, _LANE_W, _MARGIN = 0.12, 0.06, 0.3, 0.3, 0.12, 0.15
_COLORS = (("input", "#d9ead3"), ("conv", "#cfe2f3"), ("dense", "#fde9c9"),
           ("linear", "#fde9c9"), ("norm", "#e6d7f2"), ("op", "#ffffff"))


@dataclasses.dataclass
class Box:
    x: float  # centre, inches from the left
    y: float  # centre, inches from the top
    w: float
    h: float
    lines: list[str]
    kind: str
    type: str


def _shape(s) -> str:
    return "(" + ",".join(map(str, s)) + ")"


def _flops(f: int) -> str:
    unit, scale = next(((u, k) for u, k in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3))
                        if f >= k), ("FLOP", 1))
    return f"{f / scale:.3g} {unit}"


def node_lines(node) -> list[str]:
    """The text of a node's box: name and type, input -> output shapes, params and FLOPs."""
    counts = {}
    for s in node.in_shapes:
        counts[s] = counts.get(s, 0) + 1
    ins = ", ".join((f"{k}x" if k > 1 else "") + _shape(s) for s, k in counts.items())
    if node.kind == "input":
        return ["input", _shape(node.out_shape)]
    if node.kind == "op":
        ops = node.ops if len(node.ops) <= 3 else [node.ops[0], "...", node.ops[-1]]
        return [" · ".join(ops), f"{ins} -> {_shape(node.out_shape)}"]
    head = f"{node.name} ({node.type})" + "".join(f" + {op}" for op in node.ops)
    lines = [head, f"{ins} -> {_shape(node.out_shape)}"]
    if node.params or node.flops:
        lines.append(f"{node.params:,} params · {_flops(node.flops)}")
    return lines


def architecture_layout(graph):
    """Boxes {name: Box}, edge routes [(src, dst, [(x, y), ...])], and the (width, height)."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    forward = [(a, b) for a, b in graph.edges if order[a] < order[b]]
    rank = {}
    for n in graph.nodes:  # nodes come in trace order, a topological order of forward edges
        rank[n.name] = max((rank[a] + 1 for a, b in forward if b == n.name), default=0)
    boxes = {}
    for n in graph.nodes:
        lines = node_lines(n)
        boxes[n.name] = Box(0.0, 0.0, max(map(len, lines)) * _CHAR_W + 2 * _PAD_X,
                            len(lines) * _LINE_H + 2 * _PAD_Y, lines, n.kind, n.type)
    # an edge that skips rows passes through one lane slot per row in between
    chains, slots = {}, {r: [] for r in set(rank.values())}
    for a, b in forward:
        chains[(a, b)] = [f"~{a}>{b}@{r}" for r in range(rank[a] + 1, rank[b])]
        for r, lane in zip(range(rank[a] + 1, rank[b]), chains[(a, b)]):
            slots[r].append(lane)
    for n in graph.nodes:
        slots[rank[n.name]].append(n.name)
    preds = {}
    for (a, b), lanes in chains.items():
        for u, v in zip([a, *lanes], [*lanes, b]):
            preds.setdefault(v, []).append(u)
    x, width = {}, lambda s: boxes[s].w if s in boxes else _LANE_W  # noqa: E731
    for r in sorted(slots):
        want = {}
        for s in slots[r]:
            ps = [p for p in preds.get(s, []) if p in x]
            real = [p for p in ps if p in boxes]
            want[s] = float(np.mean([x[p] for p in (real or ps)])) if ps else 0.0
        items = sorted(slots[r], key=lambda s: (want[s], s not in boxes, order.get(s, 0)))
        pos = []
        for s in items:  # keep wanted x where possible, push right to keep boxes apart
            lo = pos[-1][1] + (width(pos[-1][0]) + width(s)) / 2 + _GAP_X if pos else -np.inf
            pos.append((s, max(want[s], lo)))
        real = [want[s] - p for s, p in pos if s in boxes]
        shift = float(np.mean(real)) if real else 0.0
        x.update((s, p + shift) for s, p in pos)
    left = min(x[s] - width(s) / 2 for s in x) - _MARGIN
    row_h = {r: max((boxes[s].h for s in slots[r] if s in boxes), default=_LINE_H)
             for r in slots}
    top, y = _MARGIN, {}
    for r in sorted(slots):
        y[r] = (top, top + row_h[r])
        top += row_h[r] + _GAP_Y
    for name, b in boxes.items():
        b.x, b.y = x[name] - left, sum(y[rank[name]]) / 2
    width_in = max(x[s] + width(s) / 2 for s in x) - left + _MARGIN
    routes = []
    for a, b in forward:
        pts = [(boxes[a].x, boxes[a].y + boxes[a].h / 2)]
        for lane, r in zip(chains[(a, b)], range(rank[a] + 1, rank[b])):
            pts += [(x[lane] - left, y[r][0]), (x[lane] - left, y[r][1])]
        routes.append((a, b, pts + [(boxes[b].x, boxes[b].y - boxes[b].h / 2)]))
    side = width_in
    for a, b in graph.edges:  # a layer used twice: go round the right-hand side
        if (a, b) not in chains:
            ya, yb = boxes[a].y, boxes[b].y
            routes.append((a, b, [(boxes[a].x + boxes[a].w / 2, ya), (side, ya), (side, yb),
                                  (boxes[b].x + boxes[b].w / 2, yb)]))
            side += _LANE_W
    return boxes, _spread_ports(routes, boxes), (side + _MARGIN * (side > width_in), top)


def _spread_ports(routes, boxes):
    """Several edges into (or out of) one box meet it side by side, not on one point."""
    for end, nxt in ((-1, -2), (0, 1)):
        groups = {}
        for k, (a, b, pts) in enumerate(routes):
            groups.setdefault(b if end == -1 else a, []).append(k)
        for name, ks in groups.items():
            ks = [k for k in ks if routes[k][2][end][0] == boxes[name].x]
            ks.sort(key=lambda k: routes[k][2][nxt][0])
            step = min(0.2, boxes[name].w / (len(ks) + 1))
            for i, k in enumerate(ks):
                pts = routes[k][2]
                pts[end] = (pts[end][0] + (i - (len(ks) - 1) / 2) * step, pts[end][1])
    return routes


def plot_architecture(graph, *, title: str | None = None):
    """A box-and-arrow diagram of `arch.graph(...)`: name, type, shapes, params, FLOPs per box."""
    boxes, routes, (w, h) = architecture_layout(graph)
    extra = 0.3 if title else 0.0
    fig = new_figure(w, h + extra)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, w)
    ax.set_ylim(h, -extra)
    ax.set_axis_off()
    if title:
        ax.text(w / 2, -extra / 2, title, ha="center", va="center", fontsize=_FONT + 2)
    for name, b in boxes.items():
        key = b.kind if b.kind != "layer" else b.type.lower()
        color = next((c for k, c in _COLORS if k in key), "#eeeeee")
        ax.add_patch(FancyBboxPatch((b.x - b.w / 2, b.y - b.h / 2), b.w, b.h, gid=f"box:{name}",
                                    boxstyle="round,pad=0,rounding_size=0.04", fc=color,
                                    ec="0.45", lw=0.8, ls="--" if b.kind == "op" else "-"))
        y0 = b.y - b.h / 2 + _PAD_Y + _LINE_H / 2
        for i, line in enumerate(b.lines):
            ax.text(b.x, y0 + i * _LINE_H, line, ha="center", va="center", family="monospace",
                    fontsize=_FONT, weight="bold" if i == 0 and b.kind != "op" else "normal",
                    gid=f"text:{name}")
    for _, _, pts in routes:
        ax.add_patch(FancyArrowPatch(path=Path(pts), arrowstyle="-|>", mutation_scale=8,
                                     lw=0.8, color="0.25", shrinkA=0, shrinkB=0))
    return fig


def _rgb(tile, cmap: str, symmetric: bool) -> np.ndarray:
    """One tile scaled to its own range (symmetric around 0 if asked) -> (h, w, 3) colors."""
    if symmetric:
        m = float(np.abs(tile).max()) or 1.0
        lo, hi = -m, m
    else:
        lo, hi = float(tile.min()), float(tile.max())
        hi = hi if hi > lo else lo + 1.0
    return matplotlib.colormaps[cmap](np.clip((tile - lo) / (hi - lo), 0, 1))[..., :3]


def _tile_figure(cells, titles=None, *, tile_size: float, suptitle: str,
                 row_labels=None, col_labels=None):
    """Many small tiles drawn as one image (one imshow: hundreds of axes are slow to draw).

    cells: rows of (h, w, 3) RGB tiles or None; titles: the same layout of strings or None.
    """
    h, w = next(t for row in cells for t in row if t is not None).shape[:2]
    nrows, ncols = len(cells), max(map(len, cells))
    top = max(2, round(0.45 * h)) if titles else max(1, h // 6)
    gap = max(1, w // 6)
    head = max(2, h // 2) if col_labels else 0  # a strip for the column labels
    canvas = np.ones((head + nrows * (h + top), ncols * (w + gap) - gap, 3))
    for r, row in enumerate(cells):
        for c, t in enumerate(row):
            if t is not None:
                y, x = head + r * (h + top) + top, c * (w + gap)
                canvas[y:y + h, x:x + w] = t
    scale = tile_size / w  # inches per tile pixel
    fig = new_figure(canvas.shape[1] * scale, canvas.shape[0] * scale)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    size = min(6.0, 0.8 * top * scale * 72)
    for r, row in enumerate(titles or []):
        for c, text in enumerate(row):
            if text:
                ax.text(c * (w + gap) + w / 2, head + r * (h + top) + top * 0.55, text,
                        ha="center", va="center", fontsize=size)
    for r, text in enumerate(row_labels or []):
        ax.text(-gap, head + r * (h + top) + top + h / 2, text, ha="right", va="center",
                fontsize=5)
    for c, text in enumerate(col_labels or []):
        ax.text(c * (w + gap) + w / 2, head * 0.6, text, ha="center", va="center", fontsize=5)
    fig.suptitle(suptitle, fontsize=8, y=1.0, va="bottom")
    return fig


def plot_filters(tiles, *, title: str = "", diverging: bool = True, tile_size: float = 0.45,
                 ncols: int = 8):
    """Kernels as images, each tile scaled to its own range.

    tiles: (K, kh, kw) one tile per output filter, or (O, I, kh, kw) an out x in mosaic.
    diverging: a red-blue map symmetric around 0 (sign visible); else gray min-max per tile.
    """
    tiles = np.asarray(tiles, np.float32)
    cmap = DIVERGING if diverging else GRAY
    if tiles.ndim == 3:
        k = len(tiles)
        cells = [[_rgb(t, cmap, diverging) for t in tiles[i:i + ncols]]
                 for i in range(0, k, ncols)]
        names = [[str(j) for j in range(i, min(i + ncols, k))] for i in range(0, k, ncols)]
        return _tile_figure(cells, names, tile_size=tile_size, suptitle=title)
    if tiles.ndim != 4:
        raise ValueError(f"tiles must be (K, kh, kw) or (O, I, kh, kw); got shape {tiles.shape}")
    cells = [[_rgb(t, cmap, diverging) for t in row] for row in tiles]
    return _tile_figure(cells, tile_size=min(tile_size, 0.3),
                        suptitle=f"{title}\nrows: output filter, columns: input channel",
                        row_labels=[str(r) for r in range(tiles.shape[0])],
                        col_labels=[str(c) for c in range(tiles.shape[1])])


def plot_feature_maps(acts, layer: str, *, images=None, labels=None, max_channels: int = 64,
                      ncols: int = 16, tile_size: float = 0.5):
    """One block of tiles per image, one tile per channel (own range each), the input first.

    acts: (N, H, W, C) activations of `layer`; images: optional (N, H', W', 1|3) inputs,
    resized to the maps' size by nearest neighbour for the first column.
    """
    acts = np.asarray(acts, np.float32)
    if acts.ndim != 4:
        raise ValueError(f"feature maps need (N, H, W, C) activations; layer {layer!r} gives "
                         f"shape {acts.shape}")
    n, h, w, c = acts.shape
    c = min(c, max_channels)
    ncols = min(ncols, c)
    cells, titles = [], []
    for k in range(n):
        first = None
        if images is not None:
            img = np.asarray(images[k], np.float32)
            img = img[np.arange(h) * img.shape[0] // h][:, np.arange(w) * img.shape[1] // w]
            first = _rgb(img[..., 0], GRAY, False) if img.shape[-1] == 1 else np.clip(img, 0, 1)
        for i in range(0, c, ncols):
            chans = range(i, min(i + ncols, c))
            lead = [] if images is None else [first if i == 0 else None]
            cells.append(lead + [_rgb(acts[k, :, :, j], SEQUENTIAL, False) for j in chans])
            # A class name is its own label; a bare index needs the word.
            head = ("input" if labels is None else str(labels[k]) if len(str(labels[k])) > 3
                    else f"label {labels[k]}")
            titles.append([head if i == 0 else ""][:len(lead)] + [f"{layer}:{j}" for j in chans])
    return _tile_figure(cells, titles, tile_size=tile_size,
                        suptitle=f"{layer}: feature maps {h}x{w}, {c} of {acts.shape[-1]} "
                                 f"channels, each scaled to its own range")
