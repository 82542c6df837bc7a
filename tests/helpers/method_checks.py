"""The per-method checks that every registered method must pass, as plain functions.

The test files parametrize them over the registry (tests/attribution/test_trust.py,
test_attribution.py); test_registry.py runs them on a method registered by a test, to show
that one registry line is all a new method needs. Kept here so no test imports another.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib

KEY = jax.random.key(0)
SHARED_TABLE_KEY = jax.random.key(42)

# The second and later models of a method x model table. Every method reaches a model in one
# of a few ways, and the model's own code (its framework, its output selector, its layers)
# is met only there: a gradient, a path, noise, a CAM's activations, a CAM's forward passes,
# occlusion, a surrogate's samples, and the two jaxpr-tracing rule rewrites. One method per
# way catches a model a method cannot reach, at a third of the compile time of all 26; the
# first model of each table runs every method (what each method computes on the values it
# reached). Dropped, each the same code as one kept on the same path: gradient x input and
# GradientSHAP (saliency's and IG's gradients), Grad-CAM++, HiRes-/XGrad-/Layer-CAM (Grad-CAM's
# layer_grad with another product), Guided Grad-CAM (two kept maps multiplied), Eigen-CAM
# (Grad-CAM's activations), Ablation-CAM (Score-CAM's forward passes at the layer, with an
# edit), deconvnet and DeepLIFT-SHAP (the rule rewrites kept), and the samplers that score
# masked copies as occlusion and LIME do.
REACH = ("saliency", "integrated_gradients", "smoothgrad", "grad_cam", "score_cam",
         "full_grad", "occlusion", "lime", "guided_backprop", "deeplift", "lrp")
# ... plus every method whose own code, not only the way it reaches the model, meets the
# model's values and ops: the rule rewrites read the model's program (deconvnet, DeepLIFT-SHAP
# besides the three above; a depthwise conv, a LayerNorm, average pooling are rules of their
# own), Grad-CAM++ weighs the layer's activations by gradient powers, Eigen-CAM runs an SVD of
# them (LAPACK, float32 only), Ablation-CAM writes a value into the layer.
MODEL_VALUES = REACH + ("deconvnet", "deeplift_shap", "grad_cam_plus_plus", "eigen_cam",
                        "ablation_cam")


class BNNet(nnx.Module):
    """conv -> BatchNorm -> relu -> dropout -> conv -> global mean -> dense; any H x W."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 6, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(6, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.conv2 = nnx.Conv(6, 8, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        h = self.drop(nnx.relu(self.bn(self.conv1(x))))
        return self.head(nnx.relu(self.conv2(h)).mean(axis=(1, 2)))


def make_bn():
    """BNNet as a Probe, with non-trivial running statistics (as after training)."""
    model = BNNet(nnx.Rngs(0))
    # Non-trivial running statistics, as after training.
    model.bn.mean[...] = jnp.linspace(-0.2, 0.2, 6)
    model.bn.var[...] = jnp.linspace(0.5, 2.0, 6)
    return probe_lib.from_model(model)


def make_images():
    return np.asarray(jax.random.uniform(jax.random.key(1), (64, 12, 12, 1)), np.float32)


def run(name, probe, x, t, idx=None, chunk=None):
    """The registered method's map. Keyed methods get one key per image, derived from the
    image's index (`idx`, default 0..N-1), so subsets see the same noise."""
    method = A.get(name)
    opts = dict(method.quick)
    if chunk is not None:
        opts[method.chunk_option] = chunk
    key = None
    if method.needs_key:
        ids = jnp.arange(np.shape(x)[0]) if idx is None else jnp.asarray(idx)
        key = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-zero CAMs are fine here
        return np.asarray(method(probe, getattr(probe, "params", None), x, t, key=key,
                                 **opts).map)


def check_uint8_is_divided_by_255(bn, images, name):
    u8 = np.round(images[:3] * 255).astype(np.uint8)
    # Tolerance: XLA's divide and numpy's may differ in the last bit (unoptimised XLA does),
    # which an SVD (EigenCAM) amplifies; a wrong rule (no division, / 256) is off by far more.
    np.testing.assert_allclose(run(name, bn, u8, 1), run(name, bn, u8 / np.float32(255), 1),
                               rtol=1e-4, atol=1e-5)


def check_nan_pixels_are_refused(bn, images, name):
    x = images[:2].copy()
    x[1, 3, 4, 0] = np.inf
    with pytest.raises(ValueError, match=r"1 NaN/inf value\(s\), the first at index \(1, 3, 4, 0\)"):
        run(name, bn, x, 0)


def check_target_forms_agree_and_range_is_checked(bn, images, name):
    x = images[:3]
    as_array = run(name, bn, x, np.array([2, 0, 3]))
    np.testing.assert_allclose(run(name, bn, x, [2, 0, 3]), as_array, rtol=1e-5, atol=1e-6)
    one_by_one = np.concatenate([run(name, bn, x[i:i + 1], t, idx=[i])
                                 for i, t in enumerate([2, 0, 3])])
    np.testing.assert_allclose(one_by_one, as_array, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(name, bn, x, 3), run(name, bn, x, [3, 3, 3]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 4\)"):
        run(name, bn, x, 4)
    method = A.get(name)
    if method.targets is None:  # a user's own method: None means what it makes of it
        return
    if A.registry.support_of(method)["predicted"]:  # a reason: None is refused
        with pytest.raises(ValueError, match="target is required"):
            run(name, bn, x, None)
    else:  # None is the predicted class
        predicted = np.asarray(bn(bn.params, x)).argmax(1)
        np.testing.assert_allclose(run(name, bn, x, None), run(name, bn, x, predicted),
                                   rtol=1e-5, atol=1e-6)


def check_batch_of_one_equals_inside_a_batch(bn, images, name):
    targets = np.array([3, 1, 2])
    full = run(name, bn, images[:3], targets)
    single = run(name, bn, images[1:2], targets[1:2], idx=[1])
    np.testing.assert_allclose(single[0], full[1], rtol=1e-4, atol=1e-5)


def call_method(method, probe, xs, ts, keys):
    """The registered method with its quick options. -> (N, ...) map."""
    return method(probe, probe.params, xs, ts, key=keys if method.needs_key else None,
                  **method.quick).map


def check_shared_table(method, probe, digits, compiles):
    """Shape, finite, jit(vmap(one image)) == batched call, deterministic, no retrace."""
    x, t = jnp.asarray(digits[0][:2]), jnp.asarray(digits[1][:2])
    keys = jax.random.split(SHARED_TABLE_KEY, 2)
    out = call_method(method, probe, x, t, keys)
    assert out.shape == ((2, 28, 28) if method.kind in ("layer", "occlusion") else (2, 28, 28, 1))
    assert out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())
    assert float(jnp.abs(out).max()) > 0
    again = []
    assert not compiles(lambda: again.append(call_method(method, probe, x, t, keys)),
                        "float32[2,28,28,1]", "int32[2]"), "second call with the same shapes retraced"
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(out))
    single = jax.jit(jax.vmap(
        lambda xi, ti, ki: call_method(method, probe, xi[None], ti, ki[None])[0]))(x, t, keys)
    scale = float(jnp.abs(out).max())
    np.testing.assert_allclose(np.asarray(single), np.asarray(out), rtol=1e-4, atol=1e-4 * scale)
