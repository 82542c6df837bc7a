"""core/interpret: the one jaxpr interpreter, and its four users on a model that uses a
nested jax.jit, jax.checkpoint, a jax.custom_vjp layer and a custom_jvp ReLU."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend import core as jcore

from jaxviz import arch
from jaxviz.propagation import relu_rules
from jaxviz.core import fastgrad, interpret
from jaxviz.core import jax_compat as compat
from jaxviz.core import probe as probe_lib
from jaxviz.occlusion import occlusion

# ---- the model ---------------------------------------------------------------------------


@jax.custom_jvp
def my_relu(x):
    return jnp.maximum(x, 0.0)


my_relu.defjvp(lambda p, t: (my_relu(p[0]), jnp.where(p[0] > 0, t[0], 0.0)))


@jax.custom_vjp
def halved_dense_relu(w, b, h):
    """relu(flatten(h) @ w + b), the layer "dense1" (its scope is inside the custom_vjp),
    whose user-chosen backward halves the cotangent: an interpreter that dropped the custom
    derivative would give different gradients."""
    with jax.named_scope(probe_lib.layer_scope("dense1")):
        return jnp.maximum(h.reshape(h.shape[0], -1) @ w + b, 0.0)


def _hdr_fwd(w, b, h):
    z = h.reshape(h.shape[0], -1) @ w + b
    return jnp.maximum(z, 0.0), (w, h, z)


def _hdr_bwd(res, g):
    w, h, z = res
    gz = 0.5 * jnp.where(z > 0, g, 0.0)
    return h.reshape(h.shape[0], -1).T @ gz, gz.sum(0), (gz @ w.T).reshape(h.shape)


halved_dense_relu.defvjp(_hdr_fwd, _hdr_bwd)


def _conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _scoped(name, f):
    def g(*args):
        with jax.named_scope(probe_lib.layer_scope(name)):
            return f(*args)
    return g


def _layers(relu1, relu2):
    """(name, call) of each layer; relu1/relu2 are the ReLUs after conv1/conv2."""
    conv1 = jax.jit(_scoped("conv1", lambda p, x: relu1(_conv(x, p["k"]) + p["b"])))

    def conv2_pool(p, h):
        h = relu2(_conv(h, p["k"]) + p["b"])
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    conv2 = jax.checkpoint(_scoped("conv2", conv2_pool))
    dense1 = lambda p, h: halved_dense_relu(p["w"], p["b"], h)  # noqa: E731
    inner = jax.jit(_scoped("preds", lambda p, h: h @ p["w"] + p["b"]))
    preds = jax.jit(lambda p, h: inner(p, h))  # a jit inside a jit
    return [("conv1", conv1), ("conv2", conv2), ("dense1", dense1), ("preds", preds)]


def _run_with(relu1, relu2):
    layers = _layers(relu1, relu2)

    def run(params, x, edits, acts, on_call):
        h = x
        for name, call in layers:
            h = call(params[name], h)
            h = edits[name](h) if name in edits else h
            acts[name] = h
            if on_call is not None:
                on_call(name, call, h)
        return h
    return run


RUN = _run_with(jax.nn.relu, my_relu)


def model(params, x):
    """(N, 12, 12, 1) -> (N, 10) logits."""
    return RUN(params, x, {}, {}, None)


def _params(seed=0):
    ks = jax.random.split(jax.random.key(seed), 4)
    n = jax.random.normal
    return {"conv1": {"k": n(ks[0], (3, 3, 1, 16)) * 0.5, "b": jnp.full((16,), 0.05)},
            "conv2": {"k": n(ks[1], (3, 3, 16, 16)) * 0.15, "b": jnp.full((16,), -0.02)},
            "dense1": {"w": n(ks[2], (256, 32)) * 0.1, "b": jnp.full((32,), 0.01)},
            "preds": {"w": n(ks[3], (32, 10)) * 0.3, "b": jnp.zeros((10,))}}


# One compiled program for the module's data, not a dozen eager ones at collection.
PARAMS, X = jax.jit(lambda: (_params(), jax.random.uniform(jax.random.key(7), (3, 12, 12, 1))))()
T = jnp.array([1, 4, 7])


def _score(fn, params, x):
    return jnp.take_along_axis(fn(params, x), T[:, None], axis=1).sum()


# ---- the interpreter itself -----------------------------------------------------------------

def _all_calls(x):
    """sin inside a custom_vjp, cos inside a checkpoint inside a jit, exp in a custom_jvp."""
    @jax.custom_vjp
    def cv(a):
        return jnp.sin(a)
    cv.defvjp(lambda a: (jnp.sin(a), a), lambda a, g: (g * jnp.cos(a),))

    @jax.custom_jvp
    def cj(a):
        return jnp.exp(a)
    cj.defjvp(lambda p, t: (cj(p[0]), cj(p[0]) * t[0]))
    y = jax.jit(lambda a: jax.checkpoint(jnp.cos)(a) * 2.0)(x)
    return cj(cv(y)) + jnp.tanh(x)


def _closed_call(x):
    call = jcore.primitives.closed_call_p
    inner = jax.make_jaxpr(jnp.log1p)(x)
    return call.bind(x, **call.get_bind_params({"call_jaxpr": inner}))[0]


@pytest.mark.parametrize("custom", ["keep", "inline"])
@pytest.mark.parametrize("remat", ["keep", "inline"])
def test_identity_evaluation_equals_the_function(custom, remat):
    x = jnp.linspace(-1.0, 1.0, 7)
    closed = jax.make_jaxpr(_all_calls)(x)
    out = interpret.evaluate(closed, [x], custom=custom, remat=remat)
    np.testing.assert_allclose(out[0], _all_calls(x), rtol=1e-6)
    # under jax.grad too: the kept custom_vjp's backward is the user's (here the true one)
    g = jax.grad(lambda a: interpret.evaluate(closed, [a], custom=custom, remat=remat)[0].sum())
    np.testing.assert_allclose(g(x), jax.grad(lambda a: _all_calls(a).sum())(x), rtol=1e-5)
    np.testing.assert_allclose(interpret.evaluate(model_jaxpr(), [*jax.tree.leaves(PARAMS), X],
                                                  custom=custom, remat=remat)[0],
                               model(PARAMS, X), rtol=1e-5, atol=1e-6)


def model_jaxpr():
    leaves, tree = jax.tree.flatten(PARAMS)
    return jax.make_jaxpr(lambda ls, x: model(jax.tree.unflatten(tree, ls), x))(leaves, X)


def test_closed_call_is_inlined():
    x = jnp.linspace(0.0, 1.0, 5)
    closed = jax.make_jaxpr(_closed_call)(x)
    assert [e.primitive.name for e in closed.jaxpr.eqns] == [compat.CLOSED_CALL]
    assert [e.primitive.name for e in interpret.leaf_eqns(closed)] == ["log1p"]
    np.testing.assert_allclose(interpret.evaluate(closed, [x])[0], jnp.log1p(x), rtol=1e-6)


def test_a_rule_replaces_a_primitive_everywhere_it_reaches():
    x = jnp.linspace(-1.0, 1.0, 7)
    closed = jax.make_jaxpr(_all_calls)(x)
    to_sin = {"cos": lambda eqn, invals: [jnp.sin(invals[0])],
              "sin": lambda eqn, invals: [jnp.cos(invals[0])]}
    y = jnp.sin(x) * 2.0  # cos inside the checkpoint inside the jit became sin
    # kept custom_vjp: its sin is out of the rules' reach
    out = interpret.evaluate(closed, [x], to_sin, custom="keep")[0]
    np.testing.assert_allclose(out, jnp.exp(jnp.sin(y)) + jnp.tanh(x), rtol=1e-6)
    out = interpret.evaluate(closed, [x], to_sin, custom="inline")[0]
    np.testing.assert_allclose(out, jnp.exp(jnp.cos(y)) + jnp.tanh(x), rtol=1e-6)
    # a rule returning None leaves the primitive alone
    out = interpret.evaluate(closed, [x], {"tanh": lambda eqn, invals: None})[0]
    np.testing.assert_allclose(out, _all_calls(x), rtol=1e-6)


def test_every_call_is_inlined_exactly_once():
    x = jnp.linspace(-1.0, 1.0, 7)
    closed = jax.make_jaxpr(_all_calls)(x)
    offered = []

    def spy(eqn, invals):
        offered.append(eqn.primitive.name)
        return None
    spies = {name: spy for name in interpret.CALLS}
    leaves = []

    def leaf(eqn, invals):
        leaves.append(eqn.primitive.name)
        return [object() for _ in eqn.outvars]
    interpret.evaluate(closed, [object()], spies, default=leaf, lift=lambda _: object(),
                       custom="inline", remat="inline")
    assert sorted(offered) == sorted(["jit", "remat2", "custom_vjp_call", "custom_jvp_call"])
    assert sorted(leaves) == sorted(["cos", "mul", "sin", "exp", "tanh", "add"])
    assert not set(leaves) & set(interpret.CALLS)
    # custom="keep": the custom calls reach `default` whole, once each
    kept = [e.primitive.name for e in interpret.leaf_eqns(closed, custom="keep")]
    assert sorted(kept) == sorted(["cos", "mul", "custom_vjp_call", "custom_jvp_call", "tanh",
                                   "add"])


def test_name_stacks_carry_the_enclosing_calls():
    def f(x):
        with jax.named_scope("outer"):
            return jax.jit(_scoped("inner", jax.checkpoint(jnp.sin)))(x)
    closed = jax.make_jaxpr(f)(jnp.ones(3))
    (sin,) = interpret.leaf_eqns(closed)
    assert str(sin.source_info.name_stack) == "outer/jaxviz[inner]"


def test_remat_keep_survives_in_the_rewritten_program():
    closed = jax.make_jaxpr(lambda a: jax.checkpoint(jnp.sin)(a) * 2.0)(jnp.ones(3))
    for remat, expect in (("keep", True), ("inline", False)):
        again = jax.make_jaxpr(lambda a: interpret.evaluate(closed, [a], remat=remat))(jnp.ones(3))
        names = {e.primitive.name for e in again.jaxpr.eqns}
        assert ("remat2" in names or "checkpoint" in names) is expect, (remat, names)


def test_compose_tries_tables_in_order_and_rewrites_stack_into_one_pass():
    first = {"sin": lambda eqn, invals: None}
    second = {"sin": lambda eqn, invals: [jnp.cos(invals[0])]}
    merged = interpret.compose(first, second)
    x = jnp.linspace(0.0, 1.0, 4)
    closed = jax.make_jaxpr(jnp.sin)(x)
    np.testing.assert_allclose(interpret.evaluate(closed, [x], merged)[0], jnp.cos(x))
    guided = relu_rules.with_relu_rule(model, "guided")
    both = interpret.rewrite(guided, {"conv_general_dilated": lambda eqn, invals: None})
    assert both.fn is model  # one trace of the model, one evaluation with both tables
    assert set(both.rules) == {"max", "custom_jvp_call", "conv_general_dilated"}


def test_bad_input_names_the_argument():
    closed = jax.make_jaxpr(jnp.sin)(jnp.ones(2))
    with pytest.raises(ValueError, match="custom"):
        interpret.evaluate(closed, [jnp.ones(2)], custom="drop")
    with pytest.raises(ValueError, match="args"):
        interpret.evaluate(closed, [])
    with pytest.raises(TypeError, match="closed"):
        interpret.evaluate(jnp.sin, [jnp.ones(2)])
    if not compat.UNIFIED_JAXPR:  # jax 0.10: an open Jaxpr (its constants have no values)
        with pytest.raises(TypeError, match="closed"):
            interpret.evaluate(closed.jaxpr, [jnp.ones(2)])


# ---- the four users -------------------------------------------------------------------------

@jax.custom_vjp
def _guided_ref(x):
    return jnp.maximum(x, 0.0)


_guided_ref.defvjp(lambda x: (jnp.maximum(x, 0.0), x),
                   lambda x, g: (jnp.where((x > 0) & (g > 0), g, 0.0),))


def test_guided_backprop_equals_a_hand_written_guided_model():
    """The two ReLUs outside the custom_vjp layer (in the jit, in the checkpoint) get the
    guided rule; the custom_vjp layer keeps the user's backward."""
    ref_run = _run_with(_guided_ref, _guided_ref)
    ref = jax.grad(lambda x: _score(lambda p, a: ref_run(p, a, {}, {}, None), PARAMS, x))(X)
    plain = jax.grad(lambda x: _score(model, PARAMS, x))(X)
    assert not np.allclose(ref, plain, atol=1e-6)  # the guided rule changes this model's map
    guided = relu_rules.with_relu_rule(model, "guided")
    np.testing.assert_allclose(guided(PARAMS, X), model(PARAMS, X), rtol=1e-6)
    got = jax.jit(jax.grad(lambda x: _score(guided, PARAMS, x)))(X)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    # with fastgrad's rules in the same pass (how guided_backprop runs on CPU)
    fast = fastgrad.fast(guided, enabled=True)
    got = jax.jit(jax.grad(lambda x: _score(fast, PARAMS, x)))(X)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_fastgrad_values_and_gradients_equal_plain_grad():
    fast = fastgrad.fast(model, enabled=True)
    np.testing.assert_allclose(fast(PARAMS, X), model(PARAMS, X), rtol=1e-5, atol=1e-6)
    grad = lambda f: jax.jit(jax.grad(lambda p, x: _score(f, p, x), argnums=(0, 1)))  # noqa: E731
    want, got = grad(model)(PARAMS, X), grad(fast)(PARAMS, X)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the pool inside the checkpoint was rewritten (no select_and_scatter left)
    text = lambda f: str(jax.make_jaxpr(jax.grad(lambda x: _score(f, PARAMS, x)))(X))  # noqa: E731
    assert "select_and_scatter" in text(model) and "select_and_scatter" not in text(fast)


def test_incremental_occlusion_equals_exact():
    x = np.asarray(X[:2])
    a = occlusion(model, PARAMS, x, np.asarray(T[:2]), window=3, stride=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the exact path
        b = occlusion(model, PARAMS, x, np.asarray(T[:2]), window=3, stride=2,
                      method="incremental")
    assert float(np.abs(a.extras["scores"]).max()) > 0
    np.testing.assert_allclose(b.extras["scores"], a.extras["scores"], atol=1e-4)


def test_arch_sees_the_layers_inside_jit_checkpoint_and_custom_vjp():
    probe = probe_lib.Probe(RUN, PARAMS, kind="fn", structure="test_interpret.model")
    x1 = jax.ShapeDtypeStruct((1, 12, 12, 1), jnp.float32)
    s = arch.summary(probe, x1)
    rows = {r.name: r for r in s.rows}
    assert list(rows) == ["conv1", "conv2", "dense1", "preds"]
    assert {k: r.flops for k, r in rows.items()} == {
        "conv1": 2 * 10 * 10 * 16 * 9, "conv2": 2 * 8 * 8 * 16 * 9 * 16,
        "dense1": 2 * 32 * 256, "preds": 2 * 10 * 32}
    assert s.outside_flops == 0
    g = arch.graph(probe, x1)
    names = [n.name for n in g.nodes]
    assert names == ["input", "conv1", "conv2", "dense1", "preds"]
    for a, b in zip(names, names[1:]):
        assert g.predecessors(b) == [a]
    assert g.node("dense1").in_shapes == [(1, 4, 4, 16)]
