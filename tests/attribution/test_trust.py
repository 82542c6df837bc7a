"""Trust: every analysis survives bad input and scale without a wrong picture (issue 9).

One test per guarantee; the README's "What jaxviz guarantees" table points here. The
checks run over one table of analyses on a small NNX model with BatchNorm and Dropout
that takes any image size, so none of them depends on the reference CNN.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import attribution as A
from jaxviz import occlusion as O
from jaxviz.core import probe as probe_lib
from jaxviz.attribution import normalize
from tests.helpers import method_checks as checks
from tests.helpers.method_checks import BNNet, make_bn, make_images, run


@pytest.fixture(scope="module")
def bn():
    return make_bn()


@pytest.fixture(scope="module")
def images():
    return make_images()


KEY = jax.random.key(0)
# Every registered method, with its quick options; methods with a chunk knob also run chunked.
ANALYSES = list(A.METHODS)
CHUNKED = [n for n in A.METHODS if A.get(n).chunk_option]


# 1. uint8 images: one rule everywhere, x / 255.
@pytest.mark.parametrize("name", ANALYSES)
def test_uint8_is_divided_by_255(bn, images, name):
    checks.check_uint8_is_divided_by_255(bn, images, name)


# 2. float64 without x64: accepted, outputs float32 (and the float32 values).
@pytest.mark.parametrize("name", ANALYSES)
def test_float64_gives_float32(bn, images, name):
    got = run(name, bn, images[:3].astype(np.float64), 0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, run(name, bn, images[:3], 0), rtol=1e-5, atol=1e-6)


# 3. (H, W), (1, H, W) and channel-first are refused with the layout named.
@pytest.mark.parametrize("name", ANALYSES)
@pytest.mark.parametrize("shape,msg", [((12, 12), r"\(N, H, W, C\)"), ((1, 12, 12), r"\(N, H, W, C\)"),
                                       ((2, 1, 12, 12), "channel-first")])
def test_wrong_layouts_are_refused(bn, name, shape, msg):
    with pytest.raises(ValueError, match=msg):
        run(name, bn, np.zeros(shape, np.float32), 0)


# 4. Non-square images keep H and W in order.
def test_non_square_images_keep_orientation():
    def top_rows(params, x):  # class 0 sees only rows 0..7, class 1 the rest
        return jnp.stack([x[:, :8].sum((1, 2, 3)), x[:, 8:].sum((1, 2, 3))], -1)

    x = np.asarray(jax.random.uniform(KEY, (2, 24, 40, 1)))
    for name in ("saliency", "integrated_gradients", "occlusion"):
        m = run(name, top_rows, x, 0) if name != "occlusion" else np.asarray(O.occlusion(
            top_rows, None, x, 0, window=(4, 4), stride=(4, 4)).map)
        m = m[..., 0] if m.ndim == 4 else m
        assert m.shape[:3] == (2, 24, 40), name
        # rows 8.. never reach class 0: zero up to float rounding of the unchanged sum
        assert np.abs(m[:, 8:]).max() <= 1e-4 * np.abs(m[:, :8]).min(), name
        assert np.abs(m[:, :8]).min() > 0, name


def test_non_square_cam_shape(bn):
    x = np.asarray(jax.random.uniform(KEY, (2, 24, 40, 1)))
    assert run("grad_cam", bn, x, 0).shape == (2, 24, 40)


# 5. NaN / inf pixels are refused before any work, naming how many and where.
@pytest.mark.parametrize("name", ANALYSES)
def test_nan_pixels_are_refused(bn, images, name):
    checks.check_nan_pixels_are_refused(bn, images, name)


# 6. A baseline outside the inputs' range warns.
def test_baseline_outside_input_range_warns(bn, images):
    with pytest.warns(RuntimeWarning, match="outside the input range"):
        O.occlusion(bn, bn.params, images[:2], 0, window=4, stride=4, baseline=2.0)
    with pytest.warns(RuntimeWarning, match="outside the input range"):
        A.integrated_gradients(bn, bn.params, images[:2], 0, n_steps=4, baselines=-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        O.occlusion(bn, bn.params, images[:2], 0, window=4, stride=4, baseline=0.5)


# 7. Targets: int == list == array == per-example calls, out of range refused, None the
# predicted class (required where a method takes only given classes).
@pytest.mark.parametrize("name", ANALYSES)
def test_target_forms_agree_and_range_is_checked(bn, images, name):
    checks.check_target_forms_agree_and_range_is_checked(bn, images, name)


# 8. A model returning a tuple needs an explicit output selector.
def test_tuple_output_needs_a_selector(bn, images):
    class Two(nnx.Module):
        def __init__(self):
            self.inner = BNNet(nnx.Rngs(0))

        def __call__(self, x):
            y = self.inner(x)
            return y, -y

    p = probe_lib.from_model(Two())
    with pytest.raises(ValueError, match="say which output"):
        A.saliency(p, p.params, images[:1], 0)
    first, second = (probe_lib.from_model(Two(), output=i) for i in (0, 1))
    g1 = A.saliency(first, first.params, images[:1], 0, abs=False).map
    g2 = A.saliency(second, second.params, images[:1], 0, abs=False).map
    np.testing.assert_allclose(g2, -g1, rtol=1e-5, atol=1e-7)  # the selector picked -y
    assert float(jnp.abs(g1).max()) > 0


# 9 + 10. Inference mode: a batch of 1 equals the same image inside a batch (BatchNorm uses
# running statistics, Dropout is off), for every analysis. Batch statistics or a dropout mask
# would make image 1's map depend on its neighbours; a batch of 3 shows that as well as a
# larger one, and reuses the programs the other checks compile.
@pytest.mark.parametrize("name", ANALYSES)
def test_batch_of_one_equals_inside_a_batch(bn, images, name):
    checks.check_batch_of_one_equals_inside_a_batch(bn, images, name)


# 11. Constant maps normalise to zeros; an all-zero Grad-CAM warns.
def test_constant_maps_normalise_to_zero():
    for fn in (normalize.unit_range, normalize.max_abs, normalize.clip_percentile):
        out = np.asarray(fn(jnp.zeros((2, 5, 5))))
        assert np.isfinite(out).all() and np.all(out == 0), fn.__name__
    # min-max scaling of a constant map: no contrast to show, so zeros rather than 0/0
    assert np.all(np.asarray(normalize.unit_range(jnp.full((2, 5, 5), 3.0))) == 0)


def test_all_zero_grad_cam_warns(images):
    class Negative(nnx.Module):
        def __init__(self):
            self.conv = nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0))
            self.conv.kernel[...] = jnp.abs(self.conv.kernel[...])

        def __call__(self, x):  # positive activations, negative evidence: relu(CAM) == 0
            return -jnp.stack([self.conv(x).mean((1, 2, 3))] * 2, -1)

    p = probe_lib.from_model(Negative())
    with pytest.warns(A.BlankMapWarning, match=r"grad_cam: .*image\(s\) \[0, 1\].*no positive evidence"):
        cam = A.grad_cam(p, p.params, images[:2], 0, layer="conv").map
    assert np.all(np.asarray(cam) == 0)


# 14. Chunk sizes of 1, one that does not divide the count, and one larger than it.
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_sizes_do_not_change_results(bn, images, name):
    x, t = images[:3], [1, 3, 0]
    reference = run(name, bn, x, t)
    for chunk in (1, 3, 10_000):
        np.testing.assert_allclose(run(name, bn, x, t, chunk=chunk), reference,
                                   rtol=1e-5, atol=1e-5, err_msg=f"{name} chunk={chunk}")


# 15. No silent recompilation: a second call with the same shapes compiles nothing. The
# 3-image shape the other checks use: the first call compiles only if no check ran before.
@pytest.mark.parametrize("name", ANALYSES)
def test_second_call_compiles_nothing(bn, images, name, compiles):
    x = images[:3]
    run(name, bn, x, [0, 1, 2])
    assert not compiles(lambda: run(name, bn, x + 0.1, [1, 2, 3]), "float32[3,12,12,1]",
                        "int32[3]")


def test_compile_log_sees_a_first_call(bn, images, compiles):
    """The check above would pass vacuously if compile logging saw nothing: a shape no other
    test uses must show its compile."""
    x = images[:2, :11, :11]
    assert compiles(lambda: run("saliency", bn, x, [0, 1]), "float32[2,11,11,1]", "int32[2]")
