"""Summary numbers, the traced data-flow graph, and the architecture diagram's geometry."""
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import matplotlib.image
import numpy as np
import pytest
from flax import nnx

from jaxviz import arch, io
from jaxviz.core import probe as probe_lib
from jaxviz.plot.arch import architecture_layout, plot_architecture

X1 = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)


def test_mnist_cnn_summary_numbers(cnn_random):
    s = arch.summary(cnn_random, X1)
    rows = {r.name: r for r in s.rows}
    assert [r.name for r in s.rows] == ["conv1", "conv2", "dropout1", "dense1", "dropout2", "preds"]
    assert s.total_params == 1_199_882
    assert {k: rows[k].flops for k in ("conv1", "conv2", "dense1", "preds")} == {
        "conv1": 389_376, "conv2": 21_233_664, "dense1": 2_359_296, "preds": 2_560}
    assert s.total_flops == 23_984_896
    assert round(s.total_flops / 1e6, 2) == 23.98
    assert rows["conv2"].output_shape == (1, 24, 24, 64)
    assert rows["conv1"].type == "Conv" and rows["dense1"].type == "Linear"
    assert rows["dense1"].params == 1_179_776 and rows["dropout1"].params == 0
    text = str(s)
    assert "conv1 (Conv)" in text and "1,199,882" in text and "23.98 MFLOP" in text
    lines = text.splitlines()
    # Keras-like alignment: every row's columns end in the same place
    body = [ln for ln in lines if ln.startswith(" ") and "(" in ln]
    assert len({len(ln) for ln in body}) == 1


def test_summary_accepts_nnx_module_and_linen_with_variables(resnet_random):
    from jaxviz.models import MnistCNN, ResidualCNN
    assert arch.summary(MnistCNN(rngs=nnx.Rngs(1)), X1).total_params == 1_199_882
    module = ResidualCNN(width=8)
    s = arch.summary(module, X1, resnet_random.params)
    assert s.total_params == arch.summary(resnet_random, X1).total_params
    with pytest.raises(TypeError, match="Probe"):
        arch.summary(lambda p, x: x, X1)


def test_flops_scale_with_batch_and_are_shapes_only(cnn_random):
    s4 = arch.summary(cnn_random, jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.float32))
    assert s4.total_flops == 4 * 23_984_896


def test_mnist_graph_is_a_chain(cnn_random):
    g = arch.graph(cnn_random, X1)
    names = [n.name for n in g.nodes]
    assert names[0] == "input"
    for a, b in zip(names, names[1:]):
        assert g.predecessors(b) == [a]
    assert g.node("conv1").ops == ["relu"]  # the activation is folded into its layer
    assert g.node("max_pool").kind == "op"
    assert g.node("dense1").in_shapes == [(1, 9216)]


def test_residual_graph_has_the_skip_connection(resnet_random):
    g = arch.graph(resnet_random, X1)
    merges = [n for n in g.nodes if n.kind == "op" and n.ops[0] == "add"]
    assert len(merges) == 2
    first = merges[0].name
    assert sorted(g.predecessors(first)) == ["block1_conv2", "stem"]
    assert sorted(g.predecessors("down2")) == [first]
    assert sorted(g.predecessors(merges[1].name)) == ["block2_conv2", "down2"]
    assert g.predecessors("head") != []


def _chain(n):
    class Chain(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(8, 8, rngs=rngs) for _ in range(n)])

        def __call__(self, x):
            for layer in self.layers:
                x = nnx.relu(layer(x))
            return x
    return probe_lib.from_model(Chain(nnx.Rngs(0)))


def _boxes_disjoint(boxes):
    bs = list(boxes.values())
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if abs(a.x - b.x) * 2 < a.w + b.w and abs(a.y - b.y) * 2 < a.h + b.h:
                return False
    return True


def _text_fits(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {p.get_gid()[4:]: p.get_window_extent(r) for p in ax.patches
             if (p.get_gid() or "").startswith("box:")}
    texts = [t for t in ax.texts if (t.get_gid() or "").startswith("text:")]
    assert texts and boxes
    for t in texts:
        e, b = t.get_window_extent(r), boxes[t.get_gid()[5:]]
        if not (e.x0 >= b.x0 and e.x1 <= b.x1 and e.y0 >= b.y0 and e.y1 <= b.y1):
            return False
    return True


def test_twenty_layer_chain_fits_one_vertical_figure():
    p = _chain(20)
    g = arch.graph(p, jax.ShapeDtypeStruct((1, 8), jnp.float32))
    assert len(g.nodes) == 21 and len(g.edges) == 20
    boxes, routes, (w, h) = architecture_layout(g)
    assert _boxes_disjoint(boxes)
    assert len({round(b.x, 6) for b in boxes.values()}) == 1  # one straight column
    assert w < 4 and h < 20
    fig = plot_architecture(g)
    assert _text_fits(fig)
    plt.close(fig)


def test_residual_layout_no_overlap_and_edges_avoid_boxes(resnet_random):
    g = arch.graph(resnet_random, X1)
    boxes, routes, _ = architecture_layout(g)
    assert _boxes_disjoint(boxes)
    assert len(routes) == len(g.edges)
    for a, b, pts in routes:
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            for name, bx in boxes.items():
                if name in (a, b):
                    continue
                for t in np.linspace(0, 1, 25):  # sample the segment; none inside another box
                    x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                    assert not (abs(x - bx.x) * 2 < bx.w and abs(y - bx.y) * 2 < bx.h), (a, b, name)
    fig = plot_architecture(g, title="resnet")
    assert _text_fits(fig)
    plt.close(fig)


def test_architecture_png_and_svg_written_not_blank(cnn_random, tmp_path):
    fig = plot_architecture(arch.graph(cnn_random, X1))
    paths = io.save_figure(fig, tmp_path / "architecture.png", formats=["png", "svg"])
    assert [p.name for p in paths] == ["architecture.png", "architecture.svg"]
    img = matplotlib.image.imread(paths[0])
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 20
    assert "<svg" in paths[1].read_text()[:500]


def test_nested_blocks_give_an_acyclic_leaf_graph():
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.conv_a = nnx.Conv(4, 4, (3, 3), rngs=rngs)
            self.conv_b = nnx.Conv(4, 4, (3, 3), rngs=rngs)

        def __call__(self, x):
            return nnx.relu(x + self.conv_b(nnx.relu(self.conv_a(x))))

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.stem = nnx.Conv(1, 4, (3, 3), rngs=rngs)
            self.b1 = Block(rngs)

        def __call__(self, x):
            return jax.nn.softmax(self.b1(self.stem(x)).mean((1, 2)))

    p = probe_lib.from_model(Net(nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)
    s = arch.summary(p, x)
    rows = {r.name: r for r in s.rows}
    assert rows["b1"].flops == rows["b1.conv_a"].flops + rows["b1.conv_b"].flops
    assert rows["b1"].params == rows["b1.conv_a"].params + rows["b1.conv_b"].params
    g = arch.graph(p, x)
    order = {n.name: i for i, n in enumerate(g.nodes)}
    assert all(order[a] < order[b] for a, b in g.edges)  # no cycle through the container
    assert "b1" not in order  # the container's own add is an op node, its children are boxes
    merge = next(n.name for n in g.nodes if n.kind == "op" and n.ops[0] == "add")
    assert sorted(g.predecessors(merge)) == ["b1.conv_b", "stem"]
    # the mean and the softmax after it: two small nodes at most, not one per primitive
    assert sum(n.kind == "op" for n in g.nodes) <= 3
