"""The model family table: every registered attribution method (its `quick` options),
exact and incremental occlusion, activation maximization and the architecture summary, over
the CNNs people train (tests/helpers/family_models.py): NNX with BatchNorm + dropout, a Linen
BatchNorm ResNet with a `train` flag, a ConvNeXt-style block (depthwise conv, LayerNorm,
GELU), strided convs + average pooling on colour 40x56 inputs, a dict output, and bfloat16
parameters. Then channel-layout detection for NHWC batches with small H, both directions.

bfloat16 tolerance (documented here and in the README's guarantee table): every result is
float32; a bfloat16 model's maps agree with its float32 twin (same weights, float32
compute) to BF16_RTOL of the map's largest magnitude: bfloat16 keeps 8 significand bits
(relative step 2**-8 ~ 0.4%), and three layers of bfloat16 rounding compound to a few
percent.
"""
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import family_models as fm
from tests.helpers.method_checks import MODEL_VALUES, REACH
from jaxviz import arch, attribution as A
from jaxviz import occlusion as O
from jaxviz.attribution import layer as L
from jaxviz.core import checks, objectives, probe as probe_lib
from jaxviz.maximize import api as maximize_api
from jaxviz.models import count_params

KEY = jax.random.key(0)
BF16_RTOL = 0.05
N = 2


@pytest.fixture(scope="module", params=list(fm.FAMILY))
def member(request):
    m = fm.FAMILY[request.param]()
    x = jax.random.uniform(jax.random.fold_in(KEY, len(request.param)), (N, *m.shape))
    # Explain the predicted class, as a user would: a random model's CAM for another class
    # may be negative everywhere (all zero after the ReLU).
    # One compiled forward, not the model's ops dispatched (and compiled) one by one.
    t = np.asarray(jax.jit(m.probe)(m.probe.params, x).argmax(-1))
    return request.param, m, x, t


def _run(name, probe, x, t, **extra):
    method = A.get(name)
    key = jax.random.split(KEY, N) if method.needs_key else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = method(probe, probe.params, x, t, key=key, **{**method.quick, **extra})
    return res, [str(w.message) for w in caught]


# ---- every registered method on every member -------------------------------------------------

# (member, method) -> the documented refusal: the method has no rule for an op the model
# uses and says so, instead of returning something that is not that method.
REFUSALS: dict = {}  # none today: LRP has a LayerNorm rule (the std held constant)

# The two Flax APIs (NNX with BatchNorm + dropout, Linen with batch_stats and a `train` flag)
# run every method; the other members run the subsets of tests/helpers/method_checks.py.
# A dict output is picked by the Probe's output selector, which every method reaches through
# probe(params, x) / probe.run: one method per way of reaching the model (REACH) catches a
# method that bypasses it. bfloat16 parameters: the ritual converts what every method shares
# (float32 images in, float32 scores in analysis.target_score, a float32 map in
# result.as_attribution), so REACH stands for the rest, plus the methods whose own code meets
# the model's bfloat16 values (MODEL_VALUES: Eigen-CAM casts before LAPACK's SVD, Ablation-CAM
# writes a float32 value into a bfloat16 layer, ...). The ConvNeXt block (depthwise conv,
# LayerNorm, GELU) and the strided/average-pooling colour net meet the methods through their
# ops: MODEL_VALUES as well.
SUBSET = {"dict_output": REACH, "bfloat16_params": MODEL_VALUES,
          "convnext_block": MODEL_VALUES, "strided_avgpool_40x56x3": MODEL_VALUES}


def test_every_method(member):
    """Shape, float32, finite and not all zero, for each registered method (SUBSET on the
    dict output and bfloat16 parameters; or its documented refusal, REFUSALS); the methods
    that rewrite ReLUs say so on the ReLU-free ConvNeXt block."""
    label, m, x, t = member
    h, w, c = m.shape
    for name, method in A.METHODS.items():
        if label in SUBSET and name not in SUBSET[label]:
            continue
        if (label, name) in REFUSALS:
            error, match = REFUSALS[label, name]
            with pytest.raises(error, match=match):
                _run(name, m.probe, x, t)
            continue
        res, warned = _run(name, m.probe, x, t)
        out = res.map
        want = (N, h, w) if method.kind in ("layer", "occlusion") else (N, h, w, c)
        assert out.shape == want, (label, name, out.shape)
        assert out.dtype == jnp.float32, (label, name, out.dtype)
        assert bool(jnp.isfinite(out).all()), (label, name)
        assert float(jnp.abs(out).max()) > 0, (label, name)
        if label == "convnext_block" and name in ("guided_backprop", "deconvnet"):
            assert any("no ReLU to rewrite" in s for s in warned), (name, warned)


@pytest.mark.parametrize("name", ["guided_backprop", "deconvnet"])
def test_relu_rewrites_warn_on_the_relu_free_convnext_block(name):
    m = fm.convnext_block()
    x = jax.random.uniform(KEY, (N, *m.shape))
    _, warned = _run(name, m.probe, x, np.zeros(N, int))
    assert any("no ReLU to rewrite" in s for s in warned), warned


def test_saliency_is_the_framework_gradient(member):
    """Independent: jax.grad of the framework's own forward (NNX merge / Linen apply)."""
    label, m, x, t = member
    got = A.saliency(m.probe, m.probe.params, x, t, abs=False).map
    score = lambda xs: jnp.take_along_axis(  # noqa: E731
        m.apply(m.probe.params, xs).astype(jnp.float32), jnp.asarray(t)[:, None], 1).sum()
    want = jax.jit(jax.grad(score))(x)  # jit: one program instead of op-by-op dispatch
    scale = float(jnp.abs(want).max())
    tol = BF16_RTOL if label == "bfloat16_params" else 1e-5  # bfloat16: op order differs
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=tol * scale, err_msg=label)


# ---- occlusion: exact by hand, incremental == exact ---------------------------------------

def test_occlusion_exact_and_incremental(member):
    """Exact: scores at two positions recomputed by hand with the framework's forward.
    Incremental: equal to exact (ops it has no rule for run on full values, still exact)."""
    label, m, x, t = member
    window, stride = (4, 4), (3, 3)
    ex = O.occlusion(m.probe, m.probe.params, x, t, window=window, stride=stride)
    assert ex.extras["scores"].dtype == ex.extras["base"].dtype == jnp.float32
    forward = jax.jit(m.apply)  # one program for every batch below (same shape)
    logits = lambda xs: forward(m.probe.params, xs).astype(jnp.float32)  # noqa: E731
    base = np.asarray(logits(x))[np.arange(N), t]
    tol = BF16_RTOL * float(np.abs(base).max()) if label == "bfloat16_params" else 1e-4
    np.testing.assert_allclose(ex.extras["base"], base, rtol=1e-4, atol=tol)
    for (i, j) in ((0, 0), (1, 2)):
        occluded = x.at[:, 3 * i:3 * i + 4, 3 * j:3 * j + 4, :].set(0.0)
        want = base - np.asarray(logits(occluded))[np.arange(N), t]  # the score's drop
        np.testing.assert_allclose(ex.extras["scores"][:, i, j], want, rtol=1e-4, atol=tol,
                                   err_msg=label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        inc = O.occlusion(m.probe, m.probe.params, x, t, window=window, stride=stride,
                          method="incremental")
    scale = float(np.abs(ex.extras["scores"]).max())
    tol = BF16_RTOL if label == "bfloat16_params" else 1e-4
    assert inc.extras["scores"].dtype == jnp.float32
    np.testing.assert_allclose(inc.extras["scores"], ex.extras["scores"], atol=tol * scale, err_msg=label)


# ---- activation maximization and the architecture summary ------------------------------------

def test_maximize_few_steps(member):
    label, m, x, t = member
    lo, hi = m.probe.input_range
    res = maximize_api.all_units(m.probe, m.probe.params, "logits", key=KEY, steps=4)
    k = m.probe.num_classes
    assert res.images.shape == (k, *m.shape) and res.images.dtype == jnp.float32
    assert float(res.images.min()) >= lo and float(res.images.max()) <= hi
    trace = np.asarray(res.trace)
    assert trace.shape == (k, 4) and np.isfinite(trace).all()
    assert (trace[:, -1] > trace[:, 0]).mean() >= 0.5, (label, trace)  # ascent ascends


def test_arch_summary(member):
    label, m, x, t = member
    s = arch.summary(m.probe, x[:1])
    assert s.total_params == count_params(m.probe.params), label
    assert s.output_shape == (1, m.probe.num_classes)
    named = {r.name for r in s.rows}
    assert set(m.probe.layer_shapes((1, *m.shape))) <= named, label


# ---- bfloat16: float32 results within the documented tolerance ---------------------------------

@pytest.mark.parametrize("name", ["saliency", "integrated_gradients", "grad_cam", "occlusion"])
def test_bfloat16_maps_match_the_float32_twin(name):
    half, full = fm.bfloat16_params(), fm.float32_twin()
    x = jax.random.uniform(KEY, (N, *half.shape))
    t = np.arange(N)
    got = _run(name, half.probe, x, t)[0].map
    want = _run(name, full.probe, x, t)[0].map
    assert got.dtype == jnp.float32
    scale = float(jnp.abs(want).max())
    err = float(jnp.abs(got - want).max()) / scale
    assert err <= BF16_RTOL, (name, err)


# ---- channel layout: NHWC with small H is not channel-first; NCHW is refused -------------------

class _Conv8(nnx.Module):
    """Takes 8 channels: (N, 3, 40, 8) is its NHWC input (3 rows, 40 columns)."""

    def __init__(self, rngs, c=8):
        self.conv = nnx.Conv(c, 4, (1, 3), rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(self.conv(x).mean(axis=(1, 2)))


@pytest.mark.parametrize("declared", [True, False])
def test_nhwc_with_small_h_is_accepted(declared):
    spec = dict(input_shape=(3, 40, 8)) if declared else {}
    p = probe_lib.from_model(_Conv8(nnx.Rngs(0)), **spec)
    x = jax.random.uniform(KEY, (2, 3, 40, 8))
    assert A.saliency(p, p.params, x, 0).map.shape == (2, 3, 40, 8)
    assert checks.channel_layout((2, 3, 40, 8), (3, 40, 8) if declared else None) != "nchw"


def test_nchw_is_refused_by_the_declared_spec_even_with_small_w():
    """(N, C, H, W) = (2, 3, 40, 4): W = 4 looks like channels by shape alone; the declared
    (40, 4, 3) says it is channel-first."""
    p = probe_lib.from_model(_Conv8(nnx.Rngs(0), c=3), input_shape=(40, 4, 3))
    with pytest.raises(ValueError, match=r"looks channel-first \(2, 3, 40, 4\)"):
        A.saliency(p, p.params, np.zeros((2, 3, 40, 4), np.float32), 0)
    assert checks.channel_layout((2, 40, 4, 3), (40, 4, 3)) == "nhwc"


def test_nchw_without_a_spec_is_refused_when_only_the_transpose_fits():
    """No declared shape: a non-square NCHW batch is found by asking the model (it takes
    only the channels-last transpose); a square one by shape alone."""
    p = probe_lib.from_model(_Conv8(nnx.Rngs(0), c=3))
    with pytest.raises(ValueError, match=r"looks channel-first \(2, 3, 40, 56\)"):
        A.saliency(p, p.params, np.zeros((2, 3, 40, 56), np.float32), 0)
    with pytest.raises(ValueError, match="channel-first"):
        checks.as_images(np.zeros((2, 3, 16, 16), np.float32))
    assert A.saliency(p, p.params, np.zeros((2, 40, 56, 3), np.float32), 0).map.shape == \
        (2, 40, 56, 3)


# ---- default chunking: every pass at once when it fits, even chunks when it does not -------

def test_default_chunk_bounds_memory_and_keeps_results(monkeypatch):
    from jaxviz.core import analysis
    w = jax.random.normal(KEY, (5 * 4 * 2, 3))
    fn = lambda p, x: x.reshape(x.shape[0], -1) @ p  # noqa: E731
    # Independent count: the reshape's output (N x 40) and the product's (N x 3), float32.
    assert analysis.pass_bytes(fn, w, (6, 5, 4, 2)) == 4 * (6 * 40 + 6 * 3)
    assert analysis.default_chunk(None, fn, w, (6, 5, 4, 2), 64) is None
    assert analysis.default_chunk(7, fn, w, (6, 5, 4, 2), 64) == 7
    x = jax.random.uniform(KEY, (6, 5, 4, 2))
    whole = A.integrated_gradients(fn, w, x, 1, n_steps=10).map
    monkeypatch.setattr(analysis, "CHUNK_MEMORY", 4 * 4 * (6 * 40 + 6 * 3))  # 4 passes fit
    assert analysis.default_chunk(None, fn, w, (6, 5, 4, 2), 10) == 4  # 3 chunks of <= 4
    assert analysis.default_chunk(None, fn, w, (6, 5, 4, 2), 3) is None
    np.testing.assert_allclose(A.integrated_gradients(fn, w, x, 1, n_steps=10).map, whole,
                               rtol=1e-5, atol=1e-7)


# ---- any unit: a neuron target, and layer= where a method has a layer form -----------------

@pytest.mark.parametrize("label", ["nnx_bn_dropout", "linen_resnet_bn"])  # NNX and Linen taps
def test_every_method_takes_a_neuron_target_and_its_layer(label):
    """Every registered method explains one unit of the deepest spatial layer (the Probe's
    tap of that layer, NNX and Linen), and each layer form returns that layer's shape. (That
    a neuron's saliency is the unit's gradient by hand is test_targets_methods.py's.)"""
    m = fm.FAMILY[label]()
    shapes = m.probe.layer_shapes((1, *m.shape))
    layer = [k for k, s in shapes.items() if len(s) == 4][-1]
    h, w, c = shapes[layer][1:]
    x = jax.random.uniform(KEY, (N, *m.shape))
    unit = objectives.neuron(layer, 0, h // 2, w // 2)
    for name, method in A.METHODS.items():
        # a neuron becomes a score in analysis.target_score, shared by every method: NNX runs
        # all 26 on it, Linen the ways of reaching the model (REACH), its tap being the change
        if label == "linen_resnet_bn" and name not in REACH:
            continue
        out = _run(name, m.probe, x, unit)[0].map
        want = (N, *m.shape[:2]) if method.kind in ("layer", "occlusion") else (N, *m.shape)
        assert out.shape == want and out.dtype == jnp.float32, (label, name, out.shape)
        assert bool(jnp.isfinite(out).all()) and float(jnp.abs(out).max()) > 0, (label, name)
    for name, form in L.LAYER_FORMS.items():
        method = A.get(name)
        key = jax.random.split(KEY, N) if method.needs_key else None
        # the quick options the layer form has (a pixel grid means nothing at a layer)
        quick = {k: v for k, v in method.quick.items()
                 if k in inspect.signature(form).parameters}
        res = method(m.probe, m.probe.params, x, np.zeros(N, int), key=key, layer=layer, **quick)
        assert res.map.shape == (N, h, w, c) and bool(jnp.isfinite(res.map).all()), (label, name)
