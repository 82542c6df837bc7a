"""The method registry: a method registered in one place shows up in the CLI's choices,
the shared attribution table, the trust checks and the report's comparison figure."""
import jax
import numpy as np
import pytest

from jaxviz import attribution as A
from jaxviz.cli import build_parser
from jaxviz.core.records import Records
from jaxviz.report import attribution_stage
from tests.helpers import method_checks as checks

TOY = "toy_squared_saliency"


def _squared_saliency(fn, params, images, target):
    return A.saliency(fn, params, images, target).map ** 2


@pytest.fixture
def toy():
    """The one place the toy method is added: a registry line."""
    method = A.register(A.Method(TOY, _squared_saliency, label="toy", signed=False,
                                 channel_reduce="max_abs"))
    yield method
    A.unregister(TOY)


def _attribute_choices():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    method = next(a for a in sub.choices["attribute"]._actions if a.dest == "method")
    return method.choices


def test_toy_method_reaches_every_consumer(toy, cnn_random, digits, compiles, tmp_path,
                                           monkeypatch):
    assert TOY in _attribute_choices()
    checks.check_shared_table(toy, cnn_random, digits, compiles)
    # The trust checks take any registered name (pytest parametrizes them over METHODS).
    bn, images = checks.make_bn(), checks.make_images()
    checks.check_uint8_is_divided_by_255(bn, images, TOY)
    checks.check_nan_pixels_are_refused(bn, images, TOY)
    checks.check_target_forms_agree_and_range_is_checked(bn, images, TOY)
    checks.check_batch_of_one_equals_inside_a_batch(bn, images, TOY)
    x, y = digits[0][:2], digits[1][:2]
    quick = {name: dict(m.quick) for name, m in A.METHODS.items() if m.quick}
    # The report's default columns are whatever the registry holds: a registry of three
    # (the toy among them) keeps this check from running every method again.
    three = Records("method", A.Method, "registry.Method")
    for name in ("saliency", "grad_cam", TOY):
        three.register(A.get(name))
    monkeypatch.setattr(attribution_stage.registry, "METHODS", three)
    result = attribution_stage.compute(cnn_random, cnn_random.params, x, y, jax.random.key(0),
                                       options=quick, sanity_methods=(TOY,))
    assert "toy" in result.columns and TOY in result.randomization
    np.testing.assert_allclose(result.columns["toy"],
                               np.abs(_squared_saliency(cnn_random, cnn_random.params, x, y))
                               .max(-1), rtol=1e-5)
    paths = attribution_stage.AttributionStage().render(result, tmp_path)
    assert [p.name for p in paths] == ["attribution_comparison.png", "attribution_sanity.png"]


def test_registry_errors(toy):
    with pytest.raises(ValueError, match=f"method {TOY!r} is already registered"):
        A.register(A.Method(TOY, _squared_saliency))
    with pytest.raises(ValueError, match="unknown method 'nope'; registered methods: .*saliency"):
        A.get("nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        A.Method("x", _squared_saliency, kind="volume")
    with pytest.raises(ValueError, match=f"{TOY} takes no key"):
        toy(None, None, np.zeros((1, 2, 2, 1)), 0, key=jax.random.key(0))


def test_every_method_returns_one_result_type(cnn_random, digits):
    """No caller inspects shapes: every registered method gives an Attribution whose map
    has the shape its kind promises, plus named extras."""
    x, y = digits[0][:2], digits[1][:2]
    out = A.compare(cnn_random, cnn_random.params, x, y, key=jax.random.key(1),
                    options={n: dict(m.quick) for n, m in A.METHODS.items() if m.quick})
    assert list(out) == list(A.METHODS)
    for name, res in out.items():
        assert isinstance(res, A.Attribution), name
        kind = A.get(name).kind
        assert res.map.shape == ((2, 28, 28) if kind != "pixel" else (2, 28, 28, 1)), name
        assert A.display_map(A.get(name), res).shape == (2, 28, 28), name
    assert out["integrated_gradients"].extras["delta"].shape == (2,)
    assert out["occlusion"].extras["scores"].shape[0] == 2
