"""Every registered metric, the same guarantees (the table is generated from METRICS, so a
metric registered once is checked here with no other file edited): batched == one by one,
jit == eager, same key -> same numbers, chunk sizes change nothing, a second call compiles
nothing, and bad input gets one clear error before any work."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxviz import attribution as A
from jaxviz import evaluate as ev
from jaxviz.core import probe as probe_lib

N, H, W = 3, 8, 8
SHAPES = (f"float32[{N},{H},{W},1]", f"int32[{N}]")


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


@functools.cache
def _setup():
    module = Tiny()
    variables = module.init(jax.random.key(0), jnp.zeros((1, H, W, 1)))
    probe = probe_lib.from_model(module, variables, input_shape=(H, W, 1))
    x = jax.random.uniform(jax.random.key(1), (N, H, W, 1))
    t = jnp.array([0, 1, 2], jnp.int32)
    maps = A.display_map(A.get("saliency"), A.attribute("saliency", probe, probe.params, x, t))
    masks = np.zeros((N, H, W), bool)
    masks[:, 2:5, 3:6] = True
    keys = jax.random.split(jax.random.key(2), N)
    return probe, x, t, maps, masks, keys


def _call(name, idx=slice(None), **extra):
    probe, x, t, maps, masks, keys = _setup()
    spec = ev.get(name)
    opts = {**spec.quick, **extra}
    if spec.needs_method:
        opts["method"] = "saliency"
    if spec.needs_masks:
        opts["masks"] = masks[idx]
    return spec.fn(probe, probe.params, x[idx], t[idx], maps[idx], key=keys[idx], **opts)


@functools.cache
def _batched(name):
    return _call(name)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


NAMES = sorted(ev.METRICS)


@pytest.mark.parametrize("name", NAMES)
def test_result_shape_and_registry_record(name):
    spec, res = ev.get(name), _batched(name)
    assert spec.direction in ("higher", "lower") and spec.family in ev.FAMILIES and spec.paper
    assert res.scores.shape == (N,) and res.scores.dtype == jnp.float32
    assert res.curve is None or res.curve.shape[0] == N


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_by_one_in_other_chunks(name):
    """Each image alone, 2 forward passes at a time, against the batch in its default
    chunks: batch composition and chunk size both leave the numbers alone."""
    full = _batched(name)
    for i in range(N):
        one = _call(name, slice(i, i + 1), chunk_size=2)
        _close(one.scores, full.scores[i:i + 1])
        if full.curve is not None:
            _close(one.curve, full.curve[i:i + 1])


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_numbers_and_second_call_compiles_nothing(name, compiles):
    first = _batched(name)
    out = {}
    assert compiles(lambda: out.setdefault("r", _call(name)), *SHAPES) == []
    np.testing.assert_array_equal(np.asarray(out["r"].scores), np.asarray(first.scores))


# Eager runs are slow (every op compiles on its own, ~10-20 s per metric here), so each
# compiled core is run eagerly once, through one of its metrics: the others are the same
# core with other static options (the curve core, the robustness core, the comparison core)
# or the same building blocks (forward_rows, row_keys, rerun.maps; ssim and the rank
# correlations are checked against scipy in their own tests).
SAME_CORE = {"insertion": "deletion", "pixel_flipping": "deletion",
             "region_perturbation_morf": "deletion", "region_perturbation_lerf": "deletion",
             "irof": "deletion", "road_lerf": "deletion", "avg_sensitivity": "max_sensitivity",
             "local_lipschitz_estimate": "max_sensitivity",
             "model_parameter_randomisation": "max_sensitivity",
             "random_logit": "max_sensitivity", "infidelity": "faithfulness_correlation",
             "monotonicity_correlation": "faithfulness_correlation",
             "sensitivity_n": "faithfulness_correlation",  # and a numpy loop in its own test
             "road_morf": "deletion"}  # ROAD's imputation: against scipy in its own test


@pytest.mark.parametrize("name", [n for n in NAMES if n not in SAME_CORE])
def test_jit_equals_eager(name):
    # The one-image, chunk-2 call of the test above: its compiled program is reused here.
    jitted = _call(name, slice(0, 1), chunk_size=2)
    with jax.disable_jit():
        eager = _call(name, slice(0, 1), chunk_size=2)
    _close(eager.scores, jitted.scores, 1e-4)


def _bad_input_errors(name, maps, match, compiles):
    probe, x, t, _, masks, keys = _setup()
    spec = ev.get(name)
    opts = {**spec.quick, **({"method": "saliency"} if spec.needs_method else {}),
            **({"masks": masks} if spec.needs_masks else {})}

    def call():
        with pytest.raises(ValueError, match=match):
            spec.fn(probe, probe.params, x, t, maps, key=keys, **opts)
    assert compiles(call, *SHAPES) == []  # the error comes before any compiled work


@pytest.mark.parametrize("name", NAMES)
def test_attributions_of_the_wrong_shape_are_refused(name, compiles):
    maps = _setup()[3]
    _bad_input_errors(name, maps[:, :, :-1], "attributions", compiles)


@pytest.mark.parametrize("name", NAMES)
def test_nan_attributions_are_refused(name, compiles):
    maps = np.array(_setup()[3])
    maps[1, 2, 3] = np.nan
    _bad_input_errors(name, maps, "NaN", compiles)
