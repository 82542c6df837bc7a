"""A map that is exactly zero everywhere reads as "nothing matters": every method says so,
with one warning (`BlankMapWarning`), naming the method, the images and the likely cause."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxviz import attribution as A
from jaxviz import occlusion as O
from jaxviz.core import probe as probe_lib
from jaxviz.core.result import BlankMapWarning

SHAPE = (40, 24, 3)
KEY = jax.random.key(2)
BLANK = ("grad_cam_plus_plus", "score_cam", "layer_cam", "ablation_cam", "lime")
LIME = dict(n_samples=20, grid=(8, 8), lasso_steps=50)


class VGG(nn.Module):
    """Linen VGG-style: conv, BatchNorm, GELU, max pool, twice; a dense head."""
    @nn.compact
    def __call__(self, x):
        for i, c in enumerate((8, 16)):
            x = nn.Conv(c, (3, 3), name=f"conv{i}")(x)
            x = nn.gelu(nn.BatchNorm(use_running_average=True, name=f"bn{i}")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


class Depthwise(nnx.Module):
    """NNX: conv, SiLU, depthwise conv, LayerNorm, pointwise conv, SiLU, mean pool, linear."""
    def __init__(self, rngs):
        self.stem = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.dw = nnx.Conv(8, 8, (3, 3), feature_group_count=8, rngs=rngs)
        self.norm = nnx.LayerNorm(8, rngs=rngs)
        self.pw = nnx.Conv(8, 16, (1, 1), rngs=rngs)
        self.head = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        h = nnx.silu(self.stem(x))
        h = nnx.silu(self.pw(self.norm(self.dw(h))))
        return self.head(h.mean(axis=(1, 2)))


def _vgg():
    """Random weights; the last BatchNorm's running mean above its inputs (as statistics
    from other data leave it), so the default layer (bn1) is negative everywhere."""
    m = VGG()
    v = m.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    stats = {**v["batch_stats"], "bn1": {"mean": jnp.full(16, 4.0), "var": jnp.ones(16)}}
    return probe_lib.from_model(m, {"params": v["params"], "batch_stats": stats},
                                input_shape=SHAPE)


def _depthwise():
    """Random weights and a negative pointwise bias: the default layer (pw) is < 0."""
    m = Depthwise(nnx.Rngs(0))
    m.pw.bias[...] = jnp.full(16, -4.0)
    return probe_lib.from_model(m, input_shape=SHAPE)


@pytest.fixture(scope="module", params=["linen_vgg_bn_gelu", "nnx_depthwise_layernorm_silu"])
def net(request):
    p = _vgg() if request.param.startswith("linen") else _depthwise()
    x = jax.random.uniform(jax.random.key(1), (2, *SHAPE))
    return p, x, np.asarray(jax.jit(p)(p.params, x).argmax(-1))  # one program, not op by op


def _call(name, p, x, t, registry: bool):
    opts = LIME if name == "lime" else {}
    key = KEY if A.get(name).needs_key else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if registry:
            res = A.attribute(name, p, p.params, x, t, key=key, **opts)
        else:
            res = getattr(A, name)(p, p.params, x, t, **({"key": key} if key is not None else {}), **opts)
    return res, [w for w in caught if issubclass(w.category, BlankMapWarning)]


@pytest.mark.parametrize("registry", [False, True], ids=["plain", "registry"])
@pytest.mark.parametrize("name", BLANK)
def test_blank_maps_warn_with_the_images_and_the_cause(net, name, registry):
    """Grad-CAM++, Score-CAM, LayerCAM, Ablation-CAM at the default layer and LIME returned
    maps of exact zeros with no warning (only Grad-CAM warned). Each now warns once,
    naming the method, the blank images and the likely cause."""
    p, x, t = net
    res, warned = _call(name, p, x, t, registry)
    flat = np.asarray(res.map).reshape(len(x), -1)
    blank = np.flatnonzero(~np.any(flat != 0, axis=1)).tolist()
    assert blank, f"{name}: expected a blank map on this net (the reproduction)"
    assert len(warned) == 1, [str(w.message) for w in warned]
    msg = str(warned[0].message)
    assert msg.startswith(f"{name}:") and f"image(s) {blank}" in msg, msg
    causes = ("alpha=0.01", "smaller alpha=") if name == "lime" else (
        "the default layer", "no positive evidence", "another layer=")
    assert all(c in msg for c in causes), msg


def test_grad_cam_uses_the_same_warning(net):
    """Grad-CAM's own all-zero warning is now the shared BlankMapWarning."""
    p, x, t = net
    res, warned = _call("grad_cam", p, x, t, registry=False)
    if np.any(np.asarray(res.map).reshape(len(x), -1) == 0, axis=1).all():
        assert len(warned) == 1 and "grad_cam" in str(warned[0].message)


def test_no_warning_under_jit_nor_for_a_nonblank_map(net, cnn_random, digits):
    """The user's own jit sees tracers (no check); a map with signal does not warn."""
    p, x, t = net
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlankMapWarning)
        jax.jit(lambda x: A.layer_cam(p, p.params, x, t).map)(x)
        A.saliency(cnn_random, cnn_random.params, digits[0][:2], digits[1][:2])


def test_nested_methods_warn_once_under_the_outer_name():
    """feature_ablation runs occlusion inside: one warning, named feature_ablation."""
    fn = lambda params, x: jnp.zeros((x.shape[0], 2)) + 0 * x.sum()  # noqa: E731
    x = jnp.ones((1, 28, 28, 1))
    with pytest.warns(BlankMapWarning) as record:
        A.feature_ablation(fn, None, x, 0)
    assert [str(w.message).split(":")[0] for w in record] == ["feature_ablation"]
    with pytest.warns(BlankMapWarning, match="occlusion"):
        O.occlusion(fn, None, x, 0, window=7, stride=7)
