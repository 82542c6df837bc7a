"""The Python API checks a Probe's inputs against its spec as strictly as the data loaders:
params (None, another model's), float images outside a declared input_range, and a batch
whose H x W the declared input_shape rules out all get one clear ValueError before any
tracing; legitimate uses (noisy copies under jit, a pure-dict State, fully convolutional
nets on other sizes) still run."""
import jax
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxviz import attribution as A
from jaxviz.core import checks
from jaxviz.core import probe as probe_lib
from jaxviz import user_data


class _Dense(nn.Module):
    """Linen conv + flatten + dense: only (8, 8, 1) inputs fit its dense kernel."""
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (3, 3))(x))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


class _Pooled(nnx.Module):
    """NNX conv + global mean pool: fully convolutional, any H x W fits."""
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.conv(x)).mean((1, 2))


@pytest.fixture(scope="module")
def dense():
    module = _Dense()
    variables = module.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
    return probe_lib.from_model(module, variables, input_shape=(8, 8, 1), input_range=(0, 1))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 1)).astype(np.float32)


def _map_traced(result):
    return getattr(result, "map", result)  # an Attribution or (earlier) a bare array


def _map(result):
    return np.asarray(_map_traced(result))


def test_float_images_outside_declared_range_are_refused(dense, images):
    """Floats in 0..255 passed silently into a model that declared input_range=(0, 1),
    although the npz loader refuses the same data."""
    with pytest.raises(ValueError, match=r"images spans \[\d.*, 2\d\d.*\], outside the model's "
                                         r"input range \[0, 1\]"):
        A.saliency(dense, dense.params, images * 255, 0)


def test_loader_and_api_share_one_range_rule(tmp_path, images):
    """The npz loader's range check is the same function as the API's."""
    np.savez(tmp_path / "d.npz", x=images * 255, y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"d.npz: float x spans .* outside the model's input "
                                         r"range \[0, 1\]"):
        user_data.load_npz(tmp_path / "d.npz", (8, 8, 1))
    checks.check_range(images * (1 + 0.5 * checks.RANGE_TOLERANCE), (0, 1))  # rounding passes


def test_wrong_hw_names_the_declared_input_shape(dense):
    """A wrong H x W against a declared input_shape surfaced as Flax's ScopeParamShapeError."""
    with pytest.raises(ValueError, match=r"images must be \(N, 8, 8, 1\), the model's declared "
                                         r"input_shape; got shape \(2, 6, 6, 1\)"):
        A.saliency(dense, dense.params, np.zeros((2, 6, 6, 1), np.float32), 0)


def test_params_none_is_a_clear_error(dense, images):
    """`A.saliency(p, None, x, y)` failed with `TypeError: argument of type 'NoneType' is not
    iterable`."""
    with pytest.raises(ValueError, match="params is None; pass the model's weights"):
        A.saliency(dense, None, images, 0)


def test_params_of_another_structure_name_expected_and_got(dense, images):
    """Parameters of another model (another tree, another kernel shape) are named, with the
    expected and the actual shape."""
    with pytest.raises(ValueError, match=r"params do not match .* missing .* unexpected"):
        A.saliency(dense, {"params": {"other": np.zeros(3)}}, images, 0)
    narrow = jax.tree.map(lambda a: a[..., :1] if a.ndim == 4 else a, dense.params)
    with pytest.raises(ValueError, match=r"kernel'\]: expected \(3, 3, 1, 2\), got \(3, 3, 1, "
                                         r"1\)"):
        A.saliency(dense, narrow, images, 0)


def test_noisy_and_traced_copies_are_not_refused(dense, images):
    """A noise tunnel's noisy copies go outside [0, 1] (traced, inside its jit), and images
    traced by a user's own jit are the user's to check: neither is refused."""
    near_edges = np.clip(images * 1.2 - 0.1, 0, 1)
    sg = A.smoothgrad(dense, dense.params, near_edges, 0, key=jax.random.key(0), n_samples=2,
                      sigma=0.5)
    assert np.isfinite(_map(sg)).all()
    saliency = lambda x: _map_traced(A.saliency(dense, dense.params, x, 0))  # noqa: E731
    assert jax.jit(saliency)(near_edges * 255).shape == (2, 8, 8, 1)


def test_uint8_maps_onto_the_declared_range(dense, images):
    """uint8 pixels went to [0, 1] whatever range the model declared (a (-1, 1) model got
    the wrong inputs); now they map onto it as the loaders map them: lo + (hi - lo) v / 255."""
    u8 = np.round(images * 255).astype(np.uint8)
    signed = probe_lib.from_model(_Dense(), dense.params, input_shape=(8, 8, 1),
                                  input_range=(-1, 1))
    want = _map(A.saliency(signed, signed.params, -1 + 2 * (u8 / 255.0), 0))
    np.testing.assert_allclose(_map(A.saliency(signed, signed.params, u8, 0)), want, atol=1e-6)


def test_pure_dict_params_and_other_sizes_of_a_pooled_net_run():
    """The pure dict of an NNX State counts as the State, and a fully convolutional net
    declared at 8 x 8 still takes 12 x 12 images."""
    pooled = probe_lib.from_model(_Pooled(nnx.Rngs(0)), input_shape=(8, 8, 1),
                                  input_range=(0, 1))
    x = np.random.default_rng(1).uniform(0, 1, (2, 12, 12, 1)).astype(np.float32)
    got = A.saliency(pooled, nnx.to_pure_dict(pooled.params), x, 0)
    assert _map(got).shape == (2, 12, 12, 1)
