"""fastgrad.fast: same values and gradients as the plain function, on any model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from jaxviz.core import compile as compile_lib
from jaxviz.core import fastgrad
from jaxviz.core import probe as probe_lib


class OverlapPoolNet(nn.Module):
    """A user-style model: strided SAME conv, overlapping 3x3/2 pool, dilated wide VALID conv."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), padding="SAME")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
        x = nn.relu(nn.Conv(16, (3, 3), kernel_dilation=(2, 2), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def overlap_random():
    module = OverlapPoolNet()
    return probe_lib.from_model(module, module.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))))


@pytest.fixture
def policy():
    """jaxviz.core.compile, with the compile policy restored after the test."""
    old = compile_lib.config()
    yield compile_lib
    compile_lib.configure(old)


def _rel(a, b):
    """Largest leafwise |a - b| / max|b|."""
    return max(float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(v)) + 1e-30))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _loss(fn, params, x):
    logits = fn(params, x)
    return jnp.sum(jax.nn.log_softmax(logits)[:, 3]) + 0.1 * jnp.sum(logits ** 2)


_REFERENCE: dict = {}


def _forward_and_grad(fn):
    """(params, x) -> (logits, (loss, (d params, d x))): the forward and the gradient in one
    function, so one jit compiles one program for both (the forward is not differentiated:
    it runs the model's primal path, not a custom rule's forward)."""
    grad = jax.value_and_grad(functools.partial(_loss, fn), argnums=(0, 1))
    return lambda params, x: (fn(params, x), grad(params, x))


def _reference(p, x):
    """Plain jitted (logits, loss, (d params, d x)), computed once per model."""
    if id(p) not in _REFERENCE:
        logits, (v, g) = jax.jit(_forward_and_grad(p))(p.params, x)
        _REFERENCE[id(p)] = (p, logits, v, g)
    return _REFERENCE[id(p)][1:]


# Eager (op-by-op) runs compile every op: keep them to the two models with rewritten pools.
@pytest.mark.parametrize("model,use_jit", [
    ("cnn_random", True), ("resnet_random", True), ("overlap_random", True),
    ("cnn_random", False), ("overlap_random", False)])
def test_values_and_gradients_match(model, use_jit, request, digits):
    p = request.getfixturevalue(model)
    x = jnp.asarray(digits[0][:3])
    fast = fastgrad.fast(p, enabled=True)
    wrap = jax.jit if use_jit else (lambda f: f)
    logits, v0, (gp0, gx0) = _reference(p, x)
    fast_logits, (v1, (gp1, gx1)) = wrap(_forward_and_grad(fast))(p.params, x)
    assert _rel(fast_logits, logits) <= 1e-6
    assert _rel(v1, v0) <= 1e-6
    assert _rel(gx1, gx0) <= 1e-5
    assert _rel(gp1, gp0) <= 1e-5


def test_mnist_cnn_rewrites_apply(cnn_random, digits):
    """The 2x2 pool loses its select_and_scatter; the wide VALID conv gets padded."""
    p, x = cnn_random, jnp.asarray(digits[0][:2])

    def grad_text(fn):
        return str(jax.make_jaxpr(jax.grad(lambda pa: fn(pa, x).sum()))(p.params))

    plain, fast = grad_text(p), grad_text(fastgrad.fast(p, enabled=True))
    assert "select_and_scatter" in plain and "select_and_scatter" not in fast
    assert "padding=((0, 1), (0, 0))" in fast
    assert "optimization_barrier" in fast  # the input gradient's kernel is materialized


def test_conv_padding_is_a_parameter(cnn_random, digits):
    """pad_convs=False (for programs compiled with YNNPACK off): no extra padding row, the
    same gradients, the rest of the rewrite kept."""
    p, x = cnn_random, jnp.asarray(digits[0][:2])
    unpadded = fastgrad.fast(p, enabled=True, pad_convs=False)
    grad = lambda fn: jax.jit(jax.grad(lambda x: fn(p.params, x)[:, 3].sum()))
    text = str(jax.make_jaxpr(grad(unpadded))(x))
    assert "padding=((0, 1), (0, 0))" not in text and "optimization_barrier" in text
    assert _rel(grad(unpadded)(x), grad(p)(x)) <= 1e-5
    assert unpadded != fastgrad.fast(p, enabled=True)  # a different static function


def test_pool_ties_follow_first_maximum():
    """Equal values in a window: the gradient goes to the first, as select_and_scatter does."""
    x = jnp.array([[1.0, 1.0, 0.0, 2.0], [1.0, 0.5, 2.0, 2.0], [0.0, 0.0, 3.0, 1.0],
                   [0.0, 0.0, 1.0, 3.0], [5.0, 5.0, 5.0, 5.0]])[None, :, :, None]  # ragged H

    def pool(v):
        return lax.reduce_window(v, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    g = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    want = jax.vjp(pool, x)[1](g)[0]
    fast = fastgrad.fast(pool, enabled=True)
    np.testing.assert_array_equal(jax.vjp(fast, x)[1](g)[0], want)
    t = jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape)  # forward mode works too
    np.testing.assert_array_equal(jax.jvp(fast, (x,), (t,))[1], jax.jvp(pool, (x,), (t,))[1])


@pytest.mark.parametrize("strides,dilation,spec,padding", [
    ((1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), "VALID"),
    ((2, 1), (2, 1), ("NCHW", "OIHW", "NHWC"), "VALID"),
    ((2, 2), (1, 1), ("NHWC", "HWIO", "NHWC"), ((1, 2), (0, 1))),
])
def test_conv_gradients_match(strides, dilation, spec, padding):
    k = jax.random.split(jax.random.key(3), 3)
    lhs_shape = (2, 11, 9, 16) if spec[0] == "NHWC" else (2, 16, 11, 9)
    rhs_shape = (3, 3, 16, 8) if spec[1] == "HWIO" else (8, 16, 3, 3)
    x, w = jax.random.normal(k[0], lhs_shape), jax.random.normal(k[1], rhs_shape)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                        dimension_numbers=spec)

    @jax.jit
    def check(x, w, g):
        fast = fastgrad.fast(conv, enabled=True)
        (y, vjp), (y_f, vjp_f) = jax.vjp(conv, x, w), jax.vjp(fast, x, w)
        return (y, vjp(g)), (y_f, vjp_f(g))

    want, got = check(x, w, jax.random.normal(k[2], jax.eval_shape(conv, x, w).shape))
    # Exactly equal on CPU; cuDNN may pick another algorithm for the padded form (2.7e-7 on an H200).
    assert _rel(got[0], want[0]) <= 1e-6
    assert _rel(got[1], want[1]) <= 1e-5


def test_switch_off(cnn_random, digits, policy):
    p, x = cnn_random, jnp.asarray(digits[0][:2])

    def grad_jaxpr(fn):
        return str(jax.make_jaxpr(jax.grad(lambda x: fn(p.params, x).sum()))(x))

    assert grad_jaxpr(fastgrad.fast(p, enabled=False)) == grad_jaxpr(p)
    policy.configure(fastgrad="0")  # what JAXVIZ_FASTGRAD=0 at import sets
    assert not policy.fastgrad_on()
    assert grad_jaxpr(policy.fast_model(p)) == grad_jaxpr(p)
    assert grad_jaxpr(fastgrad.fast(p, enabled=True)) != grad_jaxpr(p)


def test_static_argument_does_not_retrace(cnn_random, digits):
    p, x = cnn_random, jnp.asarray(digits[0][:2])
    traces = []

    @functools.partial(jax.jit, static_argnames="fn")
    def saliency(fn, params, x):
        traces.append(1)
        return jax.grad(lambda x: fn(params, x)[:, 0].sum())(x)

    saliency(fastgrad.fast(p), p.params, x)
    saliency(fastgrad.fast(p), p.params, x)  # rebuilt wrapper, equal and hash-equal
    assert len(traces) == 1
    assert fastgrad.fast(fastgrad.fast(p)) == fastgrad.fast(p)
    assert fastgrad.fast(p).params is p.params  # Probe attributes fall through


def test_rejects_non_callable():
    with pytest.raises(TypeError, match="fn: expected a callable"):
        fastgrad.fast(3)
