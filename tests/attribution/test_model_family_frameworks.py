"""The model-family table's Equinox and Keras rows: BatchNorm + residual and depthwise conv
+ GELU (the plain CNN row is tests/core/test_twins.py), each the twin of an NNX model with
the same weights (tests/helpers/twins.py), so every check is against the NNX twin's number.

Per row: logits (the framework's own forward and the Probe), and the analyses whose result
depends on how the framework writes the model, not only on its function: the methods
that read the program (guided backprop's ReLUs, DeepLIFT's and LRP's rules, FullGrad's
biases), the methods that read a layer (Grad-CAM, Eigen-CAM, at the same named layer),
exact and incremental occlusion, class maximization and the summary. The methods that see
only the function (perturbation and plain gradient methods) agree once logits and the
input gradient do; the plain row runs one method per way of reaching the model.
"""
import warnings

import jax
import numpy as np
import pytest

from jaxviz import arch, attribution as A
from jaxviz import occlusion as O
from jaxviz.maximize import api as maximize_api
from tests.helpers import twins as tw

KEY = jax.random.key(0)
N = 2
RTOL = 1e-4
ROWS = [(a, fw) for a in ("bn_res", "dw_gelu") for fw in ("equinox", "keras")]
PROGRAM = ("saliency", "guided_backprop", "deeplift", "lrp", "full_grad")
LAYER = ("grad_cam", "eigen_cam")
# (architecture, framework, method) -> the known defect (strict: fails once fixed, so the
# entry goes).
KNOWN: dict = {}  # none today


@pytest.fixture(scope="module")
def refs():
    """{arch: (NNX twin, x, predicted class)}, built once."""
    out = {}
    for a in ("bn_res", "dw_gelu"):
        ref = tw.build(a, "nnx")
        x = jax.random.uniform(jax.random.fold_in(KEY, len(a)), (N, *tw.SHAPES[a]))
        out[a] = (ref, x, np.asarray(ref.apply(x).argmax(-1)))
    return out


@pytest.fixture(scope="module", params=ROWS, ids=lambda r: f"{r[1]}_{r[0]}")
def row(request, refs):
    a, fw = request.param
    return (tw.build(a, fw), *refs[a])


def close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.abs(want).max())
    assert got.shape == want.shape and scale > 0, (what, got.shape, want.shape, scale)
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * scale, err_msg=what)


def _map(name, twin, x, t):
    opts = {"layer": tw.CAM_LAYER[twin.arch]} if name in LAYER else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same on both twins; not the point here
        return A.get(name)(twin.probe, twin.probe.params, x, t, **opts).map


def test_logits(row):
    twin, ref, x, _ = row
    close(twin.apply(x), ref.apply(x), "the framework's own forward")
    close(twin.probe(twin.probe.params, x), ref.apply(x), "the Probe's logits")


def test_program_and_layer_methods(row):
    twin, ref, x, t = row
    for name in PROGRAM + LAYER:
        known = (twin.arch, twin.framework, name) in KNOWN
        try:
            close(_map(name, twin, x, t), _map(name, ref, x, t), f"{twin.framework}: {name}")
        except AssertionError:
            if not known:
                raise
            continue
        assert not known, f"fixed? remove {(twin.arch, twin.framework, name)} from KNOWN"


def test_occlusion_maximize_summary(row):
    twin, ref, x, t = row
    kw = dict(window=(3, 3), stride=(2, 2))
    want = O.occlusion(ref.probe, ref.probe.params, x, t, **kw).extras["scores"]
    for method in ("exact", "incremental"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # ops run on full values
            got = O.occlusion(twin.probe, twin.probe.params, x, t, method=method, **kw)
        close(got.extras["scores"], want, f"{method} occlusion")
    got, want = (maximize_api.all_units(p.probe, p.probe.params, "logits", key=KEY, steps=3)
                 for p in (twin, ref))
    close(got.images, want.images, "maximized images")
    s, s_ref = arch.summary(twin.probe, x[:1]), arch.summary(ref.probe, x[:1])
    assert (s.total_params, s.output_shape) == (s_ref.total_params, s_ref.output_shape)
    mine, theirs = {r.name: r for r in s.rows}, {r.name: r for r in s_ref.rows}
    for name, arrays in tw.weights(twin.arch).items():  # every layer with weights
        assert mine[name].output_shape == theirs[name].output_shape, name
        # A BatchNorm row: NNX's counts its running statistics, Equinox's, Keras' and
        # Linen's only scale and bias (the totals agree); reported, not settled here.
        if "mean" not in arrays:
            assert mine[name].params == theirs[name].params, name
