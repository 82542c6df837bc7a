"""Occlusion: Captum's definition against a Python-loop reference, the Keras recipe's generator,
incremental inference equal to the exact path, bad input, no retracing, figures."""
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st

from jaxviz import occlusion as occ
from jaxviz.occlusion import incremental
from jaxviz.occlusion.boxes import Box, to_full, widen
from jaxviz.core import probe as probe_lib
from jaxviz.core.result import Attribution
from jaxviz.occlusion import axis_starts, keras_vis_occlusion, occlusion, occlusion_by_score


def tiny(params, x):
    """A tiny nonlinear model: (N, H, W, C) -> (N, 5) logits."""
    return jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"]) @ params["v"]


def tiny_params(h, w, c, seed=0):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(h * w * c, 6)), jnp.float32),
            "v": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)}


def tiny_np(params, img):
    """tiny in float64 numpy, for one image (H, W, C)."""
    w, v = (np.asarray(params[k], np.float64) for k in ("w", "v"))
    return np.tanh(img.reshape(-1) @ w) @ v


def reference(params, x, target, window, stride, baseline, score):
    """Captum's Occlusion, one forward pass per position, accumulated in a Python loop."""
    def s(img):
        z = tiny_np(params, img)
        if score != "logit":
            z = z - z.max()
            z = z - np.log(np.exp(z).sum()) if score == "log_prob" else np.exp(z) / np.exp(z).sum()
        return z
    n, h, w, c = x.shape
    wy, wx = window
    ys = [k * stride[0] for k in range(math.ceil((h - wy) / stride[0]) + 1)]
    xs = [k * stride[1] for k in range(math.ceil((w - wx) / stride[1]) + 1)]
    scores = np.zeros((n, len(ys), len(xs)))
    total, count = np.zeros((n, h, w)), np.zeros((n, h, w))
    for i in range(n):
        b = np.broadcast_to(baseline if baseline != "mean" else x[i].mean((0, 1)), x[i].shape)
        base = s(x[i])[target[i]]
        for a, y0 in enumerate(ys):
            for bb, x0 in enumerate(xs):
                img = x[i].copy()
                img[y0:y0 + wy, x0:x0 + wx] = b[y0:y0 + wy, x0:x0 + wx]
                d = base - s(img)[target[i]]
                scores[i, a, bb] = d
                total[i, y0:y0 + wy, x0:x0 + wx] += d
                count[i, y0:y0 + wy, x0:x0 + wx] += 1
    return scores, np.where(count > 0, total / np.maximum(count, 1), 0.0)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 40), window=st.integers(1, 40), stride=st.integers(1, 40))
def test_positions_follow_captum_and_cover_every_pixel(length, window, stride):
    if window > length:
        return
    starts = axis_starts(length, window, stride)
    assert len(starts) == math.ceil((length - window) / stride) + 1
    assert starts[0] == 0 and np.all(np.diff(starts) == stride)
    assert starts[-1] + window >= length  # the last window reaches the edge, cut off there
    covered = occ.coverage(length, window, starts).sum(0)
    if stride <= window:
        assert starts[-1] < length and covered.min() >= 1


@settings(max_examples=6, deadline=None)
@given(h=st.integers(2, 7), w=st.integers(2, 7), c=st.integers(1, 2), data=st.data())
def test_matches_python_loop_reference(h, w, c, data):
    window = (data.draw(st.integers(1, h)), data.draw(st.integers(1, w)))
    stride = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    score = data.draw(st.sampled_from(["logit", "prob", "log_prob"]))
    baseline = data.draw(st.sampled_from([0.0, 0.5, "mean"]))
    x = np.random.default_rng(h * w).random((2, h, w, c)).astype(np.float32)
    params, target = tiny_params(h, w, c), np.array([1, 4])
    res = occlusion(tiny, params, x, target, window=window, stride=stride, baseline=baseline,
                    score=score)
    scores, attr = reference(params, x, target, window, stride, baseline, score)
    np.testing.assert_allclose(res.extras["scores"], scores, atol=2e-5)
    np.testing.assert_allclose(res.map, attr, atol=2e-5)
    np.testing.assert_allclose(occ.occluded(res), res.extras["base"][:, None, None] - res.extras["scores"], atol=1e-6)


def test_array_baseline_channel_window_and_chunks():
    x = np.random.default_rng(1).random((3, 6, 5, 3)).astype(np.float32)
    params, base = tiny_params(6, 5, 3), np.full((6, 5, 3), 0.25, np.float32)
    a = occlusion(tiny, params, x, 2, window=(3, 2), stride=(2, 2), baseline=base)
    b = occlusion(tiny, params, x, 2, window=(3, 2), stride=(2, 2), baseline=0.25, chunk_size=5)
    np.testing.assert_allclose(a.extras["scores"], b.extras["scores"], atol=1e-6)
    ch = occlusion(tiny, params, x, 2, window=(6, 5, 1), stride=(1, 1, 1))
    assert ch.extras["scores"].shape == (3, 1, 1, 3) and ch.map.shape == (3, 6, 5, 3)
    for k in range(3):  # occluding one whole channel = zeroing it
        z = x.copy(); z[..., k] = 0
        expect = tiny(params, x)[:, 2] - tiny(params, z)[:, 2]
        np.testing.assert_allclose(ch.extras["scores"][:, 0, 0, k], expect, atol=1e-5)


def test_chunked_equals_unchunked_on_cnn(cnn_random, digits):
    # The 3 images and settings of test_scored_two_ways_equals_two_calls: one compiled sweep.
    x, y = digits[0][:3], digits[1][:3]
    a = occlusion(cnn_random, cnn_random.params, x, y, window=4, stride=3)
    b = occlusion(cnn_random, cnn_random.params, x, y, window=4, stride=3, chunk_size=7)
    np.testing.assert_allclose(a.extras["scores"], b.extras["scores"], atol=1e-5)
    np.testing.assert_allclose(a.map, b.map, atol=1e-5)


def iter_occlusion_reference(image, size=8):
    """The Keras recipe's iter_occlusion, as written there (numpy, one occluded copy per cell)."""
    occlusion_ = np.full((size * 5, size * 5, 1), [0.5], np.float32)
    center = np.full((size, size, 1), [0.5], np.float32)
    pad = size * 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=0.0)
    for y in range(pad, image.shape[0] + pad, size):
        for x in range(pad, image.shape[1] + pad, size):
            tmp = padded.copy()
            tmp[y - pad:y + center.shape[0] + pad, x - pad:x + center.shape[1] + pad] = occlusion_
            tmp[y:y + center.shape[0], x:x + center.shape[1]] = center
            yield x - pad, y - pad, tmp[pad:tmp.shape[0] - pad, pad:tmp.shape[1] - pad]


def test_keras_vis_generator_parity(cnn_random, digits):
    # 3 images, as the occlusion stage below runs it: the size-8 sweep compiles once for both.
    x, y = digits[0][:3], digits[1][:3]
    res = keras_vis_occlusion(cnn_random, cnn_random.params, x, y, size=4)
    forward = jax.jit(cnn_random)
    for i in range(3):
        heat = np.zeros((28, 28), np.float32)
        counts = np.zeros(10, int)
        for x0, y0, img in iter_occlusion_reference(x[i], size=4):
            out = np.asarray(jax.nn.softmax(forward(cnn_random.params, img[None])))[0]
            heat[y0:y0 + 4, x0:x0 + 4] = out[y[i]]
            counts[out.argmax()] += 1
            assert res.extras["predicted"][i, y0 // 4, x0 // 4] == out.argmax()
        np.testing.assert_allclose(res.map[i], heat, atol=1e-5)
        np.testing.assert_array_equal(res.extras["counts"][i], counts)
    # size 8 on 28x28: the recipe's paste overruns its padded image; we clip it instead.
    with pytest.raises(ValueError):
        list(iter_occlusion_reference(x[0], size=8))
    res8 = keras_vis_occlusion(cnn_random, cnn_random.params, x, y, size=8)
    assert res8.extras["prob"].shape == (3, 4, 4)
    assert res8.extras["counts"].sum(1).tolist() == [16, 16, 16]
    assert isinstance(res8, Attribution) and res8.map.dtype == np.float32


class DeepNet(nnx.Module):
    """Five convolutions (SAME, strided, VALID, asymmetric padding), max-pool and a
    reshape-based pool, for 64x64x3 inputs."""

    def __init__(self, rngs):
        self.c1 = nnx.Conv(3, 8, (3, 3), padding="SAME", rngs=rngs)
        self.c2 = nnx.Conv(8, 8, (3, 3), padding="SAME", rngs=rngs)
        self.c3 = nnx.Conv(8, 16, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
        self.c4 = nnx.Conv(16, 16, (3, 3), padding="VALID", rngs=rngs)
        self.c5 = nnx.Conv(16, 16, (5, 5), padding=((2, 2), (1, 3)), rngs=rngs)
        self.head = nnx.Linear(16 * 7 * 7, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.c2(nnx.relu(self.c1(x)))), (2, 2), (2, 2))
        x = nnx.gelu(self.c5(nnx.relu(self.c4(jnp.tanh(self.c3(x))))))
        n, h, w, c = x.shape
        x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        return self.head(x.reshape(n, -1))


class FlattenThenActivate(nnx.Module):
    """A flattened box read first by an elementwise op, then by the dense layer."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), padding="VALID", rngs=rngs)
        self.head = nnx.Linear(4 * 13 * 13, 5, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv(x)), (2, 2), (2, 2))
        return self.head(jnp.tanh(x.reshape(x.shape[0], -1)))


# MnistCNN runs at stride 1 (uneven weight-slice groups); the non-square window and stride
# (4, 3) / (3, 4) run on the ResNet (and DeepNet), so MnistCNN needs no second case for them.
@pytest.mark.parametrize("case", ["cnn_stride1", "resnet", "deep", "flatten_act"])
def test_incremental_equals_exact(case, cnn_random, resnet_random, digits):
    if case == "deep":
        p = probe_lib.from_model(DeepNet(nnx.Rngs(0)))
        x, y, kw = np.random.default_rng(0).random((1, 64, 64, 3), np.float32), [3], dict(
            window=(16, 12), stride=(16, 13))
    elif case == "cnn_stride1":  # the benchmark's workload: uneven weight-slice groups
        p, x, y, kw = cnn_random, digits[0][:1], digits[1][:1], dict(window=4, stride=1)
    elif case == "flatten_act":
        p = probe_lib.from_model(FlattenThenActivate(nnx.Rngs(0)))
        x, y, kw = digits[0][:1], [2], dict(window=3, stride=2)
    else:
        p = resnet_random
        x, y, kw = digits[0][:1], digits[1][:1], dict(window=(4, 3), stride=(3, 4), chunk_size=5)
    a = occlusion(p, p.params, x, y, score="log_prob", **kw)
    b = occlusion(p, p.params, x, y, score="log_prob", method="incremental", **kw)
    np.testing.assert_allclose(b.extras["scores"], a.extras["scores"], atol=1e-4)
    np.testing.assert_allclose(b.map, a.map, atol=1e-4)


@jax.jit
def _shared_dense(x, w):
    return x @ w


def _conv_relu(params, x):
    return jax.nn.relu(jax.lax.conv_general_dilated(
        x, params["k"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))


def _incremental_equals_exact_without_fallback(fn, params, x):
    a = occlusion(fn, params, x, 1, window=3, stride=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the exact path
        b = occlusion(fn, params, x, 1, window=3, stride=2, method="incremental")
    np.testing.assert_allclose(b.extras["scores"], a.extras["scores"], atol=1e-4)


def test_incremental_with_one_jitted_layer_called_on_two_weights():
    """A jitted layer called twice shares its jaxpr; each call must use its own weights."""
    def fn(params, x):
        h = _conv_relu(params, x)
        f = h.reshape(h.shape[0], -1)
        return _shared_dense(f, params["w1"]) + 2.0 * _shared_dense(f, params["w2"])

    k = jax.random.split(jax.random.key(0), 4)
    params = {"k": jax.random.normal(k[0], (3, 3, 1, 4)),
              "w1": jax.random.normal(k[1], (400, 5)), "w2": jax.random.normal(k[2], (400, 5))}
    x = jax.random.uniform(k[3], (1, 12, 12, 1))
    _incremental_equals_exact_without_fallback(fn, params, x)


@pytest.mark.parametrize("w_rows_first", [True, False])
def test_incremental_through_a_channel_first_flatten(w_rows_first):
    """A (C, H, W) flatten (Equinox's ravel of one image) before a dense layer: the box
    covers every channel but few rows, so its delta meets W's rows as (C, rows of H*W);
    W as (in, out) and as (out, in)."""
    def fn(params, x):
        h = _conv_relu(params, x)
        f = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)
        w = params["w"]
        return jax.lax.dot_general(f, w, (((1,), (0 if w_rows_first else 1,)), ((), ())))

    k = jax.random.split(jax.random.key(1), 3)
    w = jax.random.normal(k[1], (400, 5))
    params = {"k": jax.random.normal(k[0], (3, 3, 1, 4)), "w": w if w_rows_first else w.T}
    x = jax.random.uniform(k[2], (1, 12, 12, 1))
    _incremental_equals_exact_without_fallback(fn, params, x)


@pytest.mark.parametrize("old, new, lo, size, want_size", [
    ((1, 1, 28, 28), (1, 28, 28), (0, 0, 10, 6), (1, 1, 4, 4), (1, 4, 4)),  # merge
    ((28, 28, 1), (1, 28, 28, 1), (10, 6, 0), (4, 4, 1), (1, 4, 4, 1)),  # split off a 1
    ((2, 3, 8), (48,), (1, 2, 2), (1, 1, 4), (4,)),  # single indices, then a band
    ((2, 3, 8), (48,), (1, 0, 2), (1, 3, 4), (24,)),  # after a multi-index axis: whole
])
def test_a_reshape_of_size_1_axes_keeps_the_box(old, new, lo, size, want_size):
    """Axes of size 1 (a vmapped model's batch of one, added and dropped) hold no index, so
    a box passes them unchanged instead of spreading over a whole neighbouring axis; the
    box's values are the reshaped array's at the box's place."""
    base = jnp.asarray(np.random.default_rng(0).random(old), jnp.float32)
    crop = jnp.asarray(np.random.default_rng(1).random(size), jnp.float32)
    box = Box(np.array([lo]), jnp.array([lo], jnp.int32), size, crop[None], True)
    got = widen(box, base, new)
    assert got.size == want_size
    np.testing.assert_array_equal(to_full(base.reshape(new), got).vals[0],
                                  to_full(base, box).vals[0].reshape(new))


def test_incremental_through_a_vmapped_channel_first_model():
    """Equinox's shape of a model: vmapped over images, each image (C, H, W) with its
    batch axis of one added and dropped by reshapes around every layer."""
    def one(params, xi):  # xi: (C, H, W)
        h = jax.lax.conv_general_dilated(xi[None], params["k"], (1, 1), "VALID")[0]
        return jax.nn.relu(h).ravel() @ params["w"]

    def fn(params, x):
        return jax.vmap(lambda xi: one(params, xi))(jnp.transpose(x, (0, 3, 1, 2)))

    k = jax.random.split(jax.random.key(2), 3)
    params = {"k": jax.random.normal(k[0], (4, 1, 3, 3)), "w": jax.random.normal(k[1], (400, 5))}
    x = jax.random.uniform(k[2], (1, 12, 12, 1))
    _incremental_equals_exact_without_fallback(fn, params, x)


def test_unsupported_model_falls_back_with_one_warning(monkeypatch):
    def broken(*args):
        raise NotImplementedError("no rule")
    monkeypatch.setitem(incremental._RULES, "dot_general", broken)
    incremental._check.cache_clear()
    x = np.random.default_rng(0).random((1, 4, 4, 1)).astype(np.float32)
    params = tiny_params(4, 4, 1, seed=3)
    with pytest.warns(RuntimeWarning, match="exact path"):
        a = occlusion(tiny, params, x, 0, window=2, stride=2, method="incremental")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = occlusion(tiny, params, x, 0, window=2, stride=2, method="incremental")
    np.testing.assert_allclose(a.extras["scores"], b.extras["scores"])
    incremental._check.cache_clear()


def test_second_call_does_not_retrace():
    traces = []

    def counted(params, x):
        traces.append(x.shape)
        return tiny(params, x)
    x = np.random.default_rng(0).random((2, 5, 5, 1)).astype(np.float32)
    params = tiny_params(5, 5, 1)
    for method in ("exact", "incremental"):
        occlusion(counted, params, x, 1, window=2, stride=2, method=method)
        n = len(traces)
        occlusion(counted, params, x + 1, [0, 3], window=2, stride=2, method=method)
        assert len(traces) == n, method


@pytest.mark.parametrize("kwargs, match", [
    (dict(window=(8, 2)), "window"), (dict(window=0), "window"), (dict(stride=(1, -1)), "stride"),
    (dict(window=(2, 2), stride=(1, 1, 1)), "stride"), (dict(baseline=np.zeros((3, 3))), "baseline"),
    (dict(baseline="median"), "baseline"), (dict(target=5), "target"),
    (dict(target=[0, 1, 2]), "target"), (dict(score="softmax"), "score"),
    (dict(method="fast"), "method"), (dict(chunk_size=0), "chunk_size"),
    (dict(images=np.zeros((5, 5))), "images"), (dict(images=np.zeros((2, 1, 5, 5))), "images"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(images=np.zeros((2, 5, 5, 1), np.float32), target=1)
    args.update(kwargs)
    images, target = args.pop("images"), args.pop("target")
    params = tiny_params(5, 5, 1)
    with pytest.raises(ValueError, match=match):
        occlusion(tiny, params, images, target, **args)


def test_uint8_images_are_divided_by_255():
    x = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 1), dtype=np.uint8)
    params = tiny_params(4, 4, 1)
    a = occlusion(tiny, params, x, 0, window=2, stride=2)
    b = occlusion(tiny, params, x.astype(np.float32) / 255, 0, window=2, stride=2)
    np.testing.assert_allclose(a.extras["scores"], b.extras["scores"], atol=1e-6)


def test_scored_two_ways_equals_two_calls(cnn_random, digits):
    x, y = digits[0][:3], digits[1][:3]
    both = occlusion_by_score(cnn_random, cnn_random.params, x, y, scores=("logit", "prob"),
                              window=4, stride=3)
    for score in ("logit", "prob"):
        one = occlusion(cnn_random, cnn_random.params, x, y, window=4, stride=3, score=score)
        for a, b in zip(jax.tree.leaves(both[score]), jax.tree.leaves(one)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="scores must be distinct names"):
        occlusion_by_score(cnn_random, cnn_random.params, x, y, scores=("logit", "logit"))


def test_occlusion_stage_writes_both_figures(cnn_random, digits, tmp_path, monkeypatch):
    from jaxviz import report
    from jaxviz.occlusion import exact
    sweeps, real = [], exact._occlusion

    def counted(*args, **kwargs):
        sweeps.append(kwargs["by_score"])  # the score names' targets, one per name
        return real(*args, **kwargs)

    monkeypatch.setattr(exact, "_occlusion", counted)
    inputs = report.Inputs(cnn_random, cnn_random.params, digits[0], digits[1],
                           jax.random.key(0))
    stage = report.OcclusionStage(window=4, stride=3, n=3)
    done = report.run_stage(stage, inputs, tmp_path)
    assert len(sweeps) == 1 and len(sweeps[0]) == 2  # one set of passes for both figures
    assert [p.name for p in done.paths] == ["occlusion.png", "occlusion_seed.png"]
    assert all(p.stat().st_size > 0 for p in done.paths)
    m = stage.metrics(done.result)["occlusion"]
    assert len(m["seed_counts"]) == 3 and all(sum(c) == 16 for c in m["seed_counts"])
    assert 0.0 <= m["seed_correct_cells"] <= 1.0
    assert done.result.attribution.shape == (3, 28, 28)
